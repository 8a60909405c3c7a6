// The PostgreSQL store on the management thread (docs/configuration.md#store): the link's
// socket is polled with the control socket; every full read becomes a new snapshot through the
// same path as a reload (users deleted, disabled or given a new password are cut).
#include <sys/epoll.h>

#include "control/management.h"
#include "core/log.h"
#include "route/snapshot_store.h"

namespace up {

void Management::adopt_store(std::unique_ptr<StoreLink> link) {
  store_ = std::move(link);
  file_groups_ = current_.config.groups;
  store_->forget_fd = [this](int fd) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
    if (fd == store_fd_) store_fd_ = -1;
  };
  store_->on_records = [this](StoreLink::Records r) { store_records(std::move(r)); };
  store_->on_read_error = [this](std::string e) {
    UP_ERROR("%s; still serving generation %llu", e.c_str(),
             static_cast<unsigned long long>(generation_));
  };
  sync_store_fd();
}

void Management::store_step(uint64_t now, bool ready) {
  store_->step(now, ready);
  sync_store_fd();
}

// libpq may change its socket while connecting: (re-)register whatever it polls now.
void Management::sync_store_fd() {
  int fd = store_->fd();
  if (fd < 0) {
    store_fd_ = -1;
    return;
  }
  uint32_t ev = store_->wants_write() ? EPOLLOUT : EPOLLIN;
  if (fd == store_fd_ && ev == store_events_ && store_->up()) return;
  epoll_event e{ev, {.fd = fd}};
  if (epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &e) != 0) epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &e);
  store_fd_ = fd;
  store_events_ = ev;
}

void Management::store_records(StoreLink::Records r) {
  ConfigSet next;
  next.config = current_.config;
  next.config.groups = file_groups_;
  Diagnostics d;
  bool ok = apply_store_records(r.users, r.proxies, r.groups, next, d);
  for (const auto& w : d.warnings) UP_WARN("%s", w.c_str());
  std::vector<std::string> errors = d.errors;
  std::unique_ptr<Snapshot> snap;
  if (ok) snap = prepare(next, errors);
  if (!snap) {
    for (const auto& e : errors) UP_ERROR("%s", e.c_str());
    UP_ERROR("store: the records do not load (%zu error(s)); still serving generation %llu",
             errors.size(), static_cast<unsigned long long>(generation_));
    return;
  }
  size_t users = next.users.size(), proxies = next.proxies.size();
  commit(std::move(snap), std::move(next), nullptr);
  UP_INFO("store: read in full: generation %llu, %zu user(s), %zu upstream(s)",
          static_cast<unsigned long long>(generation_), users, proxies);
}

}  // namespace up
