#pragma once
// One JSON object per closed connection (README.md, "Access log"). A worker only formats its
// line and appends it to its own buffer; a writer thread empties the buffers to the file about
// every 100 ms, so a slow disk stalls that thread, never a worker's relaying. Each buffer is
// bounded: when it is full the line is dropped and counted (dropped()). Lines stay whole and in
// order per worker; everything buffered when reopen() is called (logrotate's SIGHUP) is written
// to the old file before the new one is swapped in, and the destructor writes out the rest.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace up {

struct AccessRecord {
  std::string_view user;
  std::string_view group;
  std::string_view client;
  std::string_view target;
  std::string_view route;
  uint64_t bytes_up;
  uint64_t bytes_down;
  uint64_t duration_ms;
  std::string_view result;
  // A UDP association's line also counts its datagrams.
  bool udp = false;
  uint64_t datagrams_up = 0;
  uint64_t datagrams_down = 0;
};

class AccessLog {
 public:
  // `writers`: how many threads call write(), each with its own index (the workers).
  // `buffer_bytes`: what one writer may hold unwritten before its lines are dropped.
  explicit AccessLog(unsigned writers = 1, size_t buffer_bytes = 1 << 20);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // "stderr", "off" or a file path (opened for append).
  bool open(const std::string& where, std::string& err);
  bool reopen(std::string& err);
  bool enabled() const { return fd_ >= 0; }
  // From writer `writer`'s thread; never blocks on the file.
  void write(unsigned writer, const AccessRecord& r);
  // Writes out everything buffered so far; returns when it is written.
  void flush();
  uint64_t dropped() const;

  // Appends s to out as a JSON string body (quotes not included).
  static void append_escaped(std::string& out, std::string_view s);

 private:
  struct alignas(64) Buffer {
    std::mutex mu;  // the worker appends, the writer thread swaps: contended only then
    std::string lines;
    std::atomic<uint64_t> dropped{0};
  };
  void run();
  void write_out();  // under out_mu_
  void write_all(Buffer& b);  // batch_, on behalf of b

  std::string where_;
  int fd_ = -1;
  bool atomic_appends_ = false;  // a regular file: one write(2) per batch cannot interleave
  size_t buffer_bytes_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
  std::mutex out_mu_;  // one batch at a time goes to the file, in order
  std::string batch_;  // the writer's copy being written, under out_mu_
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::atomic<bool> hurry_{false};
  bool stop_ = false;  // under wake_mu_
  int next_fd_ = -1;   // under wake_mu_: the reopened file, for the writer to swap in
  std::thread writer_;
};

}  // namespace up
