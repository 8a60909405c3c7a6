#pragma once
// The target servers: epoll threads with SO_REUSEPORT listeners on one port. The first byte a
// client sends picks the behaviour of the connection:
//   'U' upload: read and discard until EOF, then close
//   'D' download: send as fast as possible until the peer goes away
//   'E' echo once: echo bytes back; once `msg` bytes have been echoed, close (target first)
//   'P' ping-pong: echo everything until EOF
//   'G' an HTTP/1.1 origin ("GET ..."): a fixed 200 with a `msg`-byte body for every request
//       head, keep-alive, until EOF
//   nothing: hold the connection until EOF (idle tunnels)
#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

namespace uload {

class SinkServer {
 public:
  ~SinkServer() { stop(); }
  // Binds now (so errors surface before the run); threads start serving immediately.
  bool start(const sockaddr_storage& addr, socklen_t len, int threads, int msg, std::string& err);
  void stop();
  uint64_t open_connections() const { return open_.load(std::memory_order_relaxed); }

 private:
  void run(int listen_fd);
  std::vector<std::thread> threads_;
  std::vector<int> listeners_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> open_{0};
  int msg_ = 64;
};

}  // namespace uload
