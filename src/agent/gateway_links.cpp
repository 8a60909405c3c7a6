#include "agent/gateway_links.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "core/connection.h"
#include "core/runtime.h"
#include "core/worker.h"

namespace up {

GatewayLinks::GatewayLinks() : wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
GatewayLinks::~GatewayLinks() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

std::shared_ptr<const LinkIdentity> GatewayLinks::identity() {
  std::lock_guard lock(mu_);
  return identity_;
}

void GatewayLinks::set_identity(std::shared_ptr<const LinkIdentity> next) {
  std::lock_guard lock(mu_);
  identity_ = std::move(next);
}

void GatewayLinks::set_gateway(const sockaddr_storage& a, socklen_t len) {
  std::lock_guard lock(mu_);
  addr_ = a;
  addr_len_ = len;
}

void GatewayLinks::gateway(sockaddr_storage& a, socklen_t& len) {
  std::lock_guard lock(mu_);
  a = addr_;
  len = addr_len_;
}

void GatewayLinks::open(bool control_link) {
  unsigned n = static_cast<unsigned>(rt->workers.size());
  Worker* w = rt->workers[next_worker_.fetch_add(1, std::memory_order_relaxed) % n].get();
  w->mailbox().post([this, w, control_link] {
    auto* c = new Connection(*w, *this, control_link);
    w->adopt(c);
    c->start_link();
    if (c->can_free()) w->release(c);
  });
}

void GatewayLinks::notify() {
  uint64_t one = 1;
  ssize_t r = write(wake_fd_, &one, sizeof one);
  (void)r;
}

}  // namespace up
