// The PostgreSQL store on the management thread (docs/configuration.md#store): the link's
// socket is polled with the control socket; every full read becomes a new snapshot through the
// same path as a reload (users deleted, disabled or given a new password are cut).
#include <sys/epoll.h>
#include <time.h>

#include <algorithm>

#include "control/management.h"
#include "core/log.h"
#include "route/snapshot.h"
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
  store_->on_user = [this](std::string name, bool found, std::string record) {
    store_user(name, found, record);
  };
  store_->on_proxies = [this](std::string doc) { store_proxies(doc); };
  store_->on_agents = [this](std::string doc) { store_agents(doc); };
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
  bool agents_ok = apply_store_agents(r.agents, next, d);  // first: the groups check counts them
  bool ok = apply_store_records(r.users, r.proxies, r.groups, next, d) && agents_ok;
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

// The row is checked as the loader checks it, against what this node serves; one that does
// not fit (bad JSON, an unknown upstream, a uuid another user has) is left to a full read,
// which skips and reports it as at start-up.
void Management::store_user(const std::string& name, bool found, const std::string& record) {
  std::optional<User> after;
  if (found) {
    std::vector<User> parsed;
    Diagnostics d;
    bool ok = parse_users("{\"users\":[" + record + "]}", "store (table users)", parsed, d) &&
              d.ok() && parsed.size() == 1 && parsed[0].username == name;
    for (const auto& w : d.warnings) UP_WARN("%s", w.c_str());
    if (ok) {
      const User& u = parsed[0];
      if (u.external_proxy_id &&
          !names_route(current_.proxies, current_.agents, *u.external_proxy_id))
        ok = false;
      if (!u.uuid.empty())
        for (const User& other : current_.users)
          if (other.uuid == u.uuid && other.username != name) ok = false;
    }
    if (!ok) {
      UP_WARN("store: user %s as another node left it does not load here; reading the store in "
              "full", name.c_str());
      return store_->resync();
    }
    after = std::move(parsed[0]);
  } else if (std::none_of(current_.users.begin(), current_.users.end(),
                          [&](const User& u) { return u.username == name; })) {
    return;  // deleted here already
  }
  apply_user(name, after, nullptr);
  UP_INFO("store: user %s %s by another node: generation %llu", name.c_str(),
          found ? "changed" : "deleted", static_cast<unsigned long long>(generation_));
}

void Management::store_proxies(const std::string& doc) {
  std::vector<UpstreamProxy> next;
  Diagnostics d;
  bool ok = parse_proxies(doc, "store (table upstreams)", next, d) && d.ok();
  for (const auto& w : d.warnings) UP_WARN("%s", w.c_str());
  // Every upstream a user or a failure rule names must still be there.
  RouteIds routes(next, current_.agents);
  auto known = [&](const OnFailure& f) {
    return f.kind != OnFailure::Kind::upstream || routes.proxy(f.upstream_id);
  };
  if (ok) ok = known(current_.config.routing.on_failure);
  for (const auto& [g, cfg] : current_.config.groups) ok = ok && known(cfg.on_failure);
  for (const User& u : current_.users)
    if (ok && u.external_proxy_id && !routes.contains(*u.external_proxy_id))
      ok = false;
  if (!ok) {
    UP_WARN("store: the upstreams as another node left them do not load with the users here; "
            "reading the store in full");
    return store_->resync();
  }
  std::vector<std::string> errors;
  auto snap = snapshot_with_proxies(*snapshots_.current(), generation_ + 1, next, health_, errors);
  if (!snap) {
    for (const auto& e : errors) UP_ERROR("%s", e.c_str());
    UP_ERROR("store: the upstreams another node wrote do not load here; still serving "
             "generation %llu", static_cast<unsigned long long>(generation_));
    return;
  }
  size_t n = next.size();
  current_.proxies = std::move(next);
  publish(std::move(snap), {}, nullptr);
  UP_INFO("store: upstreams changed by another node: generation %llu, %zu upstream(s)",
          static_cast<unsigned long long>(generation_), n);
}

// Another node's agent edit: the table as read after its commit. A row that does not load is
// skipped and reported, as in a full read; the other agents serve.
void Management::store_agents(const std::string& doc) {
  ConfigSet next;
  Diagnostics d;
  bool ok = apply_store_agents(doc, next, d);
  for (const auto& w : d.warnings) UP_WARN("%s", w.c_str());
  if (!ok) {
    for (const auto& e : d.errors) UP_ERROR("%s", e.c_str());
    UP_WARN("store: the agents as another node left them do not load; reading the store in "
            "full");
    return store_->resync();
  }
  size_t n = next.agents.size();
  apply_agents(std::move(next.agents), nullptr);
  UP_INFO("store: agents changed by another node: generation %llu, %zu agent(s)",
          static_cast<unsigned long long>(generation_), n);
}

void Management::prune_store_usage(uint64_t now) {
  // Every ten minutes, at most 10,000 rows a time: a month (the longest period) is at most 31
  // days, so a row whose period began 32 days ago counts for nothing any more.
  constexpr uint64_t every_ms = 600000;
  if (!store_ || !store_->up() || now - last_usage_prune_ms_ < every_ms) return;
  last_usage_prune_ms_ = now;
  int64_t before = static_cast<int64_t>(time(nullptr)) - 32 * 86400;
  store_->execute(
      "DELETE FROM usage WHERE ctid = ANY(ARRAY(SELECT ctid FROM usage WHERE period_start < "
      "$1::bigint LIMIT 10000))",
      {std::to_string(before)}, [](std::string err) {
        if (!err.empty()) UP_WARN("usage: rows of ended periods not deleted: %s", err.c_str());
      });
}

}  // namespace up
