#pragma once
// Pipes are a limited kernel resource (pipe-user-pages-soft), so a tunnel holds one only while
// bytes are in flight through it: taken from this per-worker pool when a splice starts, given
// back as soon as the pipe is empty again. An idle tunnel holds no pipe.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace up {

struct Pipe {
  int rd = -1;
  int wr = -1;
  int size = 0;  // capacity the kernel granted
};

class PipePool {
 public:
  // `max_pipes`: pipes this worker may hold open at once (in use + idle); `pipe_bytes`: the size
  // requested with F_SETPIPE_SZ (the kernel may grant less; see granted_bytes()).
  PipePool(size_t max_pipes, size_t idle_keep, int pipe_bytes);
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // A pipe, or nullptr when max_pipes are in use (the caller waits for a release).
  Pipe* acquire();
  // The pipe must be empty.
  void release(Pipe* p);
  // A pipe that may hold bytes (the tunnel ended mid-transfer) is closed, not reused.
  void discard(Pipe* p);

  int granted_bytes() const { return granted_bytes_; }
  size_t in_use() const { return in_use_; }

 private:
  std::vector<Pipe*> idle_;
  size_t max_pipes_;
  size_t idle_keep_;
  size_t in_use_ = 0;
  int pipe_bytes_;
  int granted_bytes_ = 0;
  bool warned_ = false;  // per pool: each worker has its own, so no shared write
};

}  // namespace up
