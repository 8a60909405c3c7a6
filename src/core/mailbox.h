#pragma once
// How other threads hand work to a worker: a closure queue plus an eventfd the worker keeps a
// read armed on in its ring. Used for crypt(3) results, stop requests and control commands —
// never on the per-byte path.
#include <sys/eventfd.h>
#include <unistd.h>

#include <functional>
#include <mutex>
#include <vector>

namespace up {

class Mailbox {
 public:
  Mailbox() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~Mailbox() {
    std::lock_guard lock(mu_);  // a poster may still be inside post()
    close(fd_);
  }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  void post(std::function<void()> fn) {
    // The wake-up is written under the lock: once the worker has taken an item, its poster is
    // done with the mailbox, so the worker may finish and the mailbox go away.
    std::lock_guard lock(mu_);
    items_.push_back(std::move(fn));
    uint64_t one = 1;
    ssize_t r = write(fd_, &one, sizeof one);
    (void)r;
  }

  void take(std::vector<std::function<void()>>& out) {
    std::lock_guard lock(mu_);
    out.swap(items_);
  }

  int fd() const { return fd_; }

 private:
  int fd_;
  std::mutex mu_;
  std::vector<std::function<void()>> items_;
};

}  // namespace up
