#include "core/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/log.h"

namespace up {

PipePool::PipePool(size_t max_pipes, size_t idle_keep, int pipe_bytes)
    : max_pipes_(max_pipes), idle_keep_(idle_keep), pipe_bytes_(pipe_bytes) {}

PipePool::~PipePool() {
  for (Pipe* p : idle_) {
    close(p->rd);
    close(p->wr);
    delete p;
  }
}

Pipe* PipePool::acquire() {
  if (!idle_.empty()) {
    Pipe* p = idle_.back();
    idle_.pop_back();
    ++in_use_;
    return p;
  }
  if (in_use_ >= max_pipes_) return nullptr;
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    if (!warned_) UP_WARN("pipe2 failed: %m (fd limit?); tunnels wait for a free pipe");
    warned_ = true;
    return nullptr;
  }
  // Bigger pipes mean fewer splice calls per megabyte; fall back quietly when the per-user
  // pipe page budget (fs.pipe-user-pages-soft) refuses.
  int got = fcntl(fds[1], F_SETPIPE_SZ, pipe_bytes_);
  if (got < 0) got = fcntl(fds[1], F_GETPIPE_SZ);
  if (granted_bytes_ == 0 || got < granted_bytes_) granted_bytes_ = got;
  ++in_use_;
  return new Pipe{fds[0], fds[1], got};
}

void PipePool::release(Pipe* p) {
  --in_use_;
  if (idle_.size() < idle_keep_) {
    idle_.push_back(p);
    return;
  }
  close(p->rd);
  close(p->wr);
  delete p;
}

void PipePool::discard(Pipe* p) {
  --in_use_;
  close(p->rd);
  close(p->wr);
  delete p;
}

}  // namespace up
