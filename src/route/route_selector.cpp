#include "route/route_selector.h"

#include <algorithm>

namespace up {

namespace {

RoutePlan refuse(uint8_t socks, int http, const char* why, std::string group) {
  RoutePlan p;
  p.kind = RoutePlan::Kind::refuse;
  p.socks_reply = socks;
  p.http_status = http;
  p.why = why;
  p.group = std::move(group);
  return p;
}

// The first set of `a` and `b`, else `c`: an upstream's own on_failure, else its group's, else
// routing's.
const OnFailure& first_set(const OnFailure& a, const OnFailure& b, const OnFailure& c) {
  if (a.kind != OnFailure::Kind::unset) return a;
  if (b.kind != OnFailure::Kind::unset) return b;
  return c;
}

uint32_t fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

void fill_attempts(RoutePlan& p, const std::vector<std::shared_ptr<const Upstream>>& ordered,
                   uint32_t attempts) {
  if (attempts == 0) attempts = 1;
  for (uint32_t i = 0; i < attempts; ++i) p.attempts.push_back(ordered[i % ordered.size()]);
}

RoutePlan single_upstream(const Snapshot& s, const std::shared_ptr<const Upstream>& u,
                          const OnFailure& group_failure, std::string group) {
  const OnFailure& f = first_set(u->config.on_failure, group_failure, s.config.routing.on_failure);
  if (!u->available()) return plan_on_failure(s, f, std::move(group));
  RoutePlan p;
  p.kind = RoutePlan::Kind::upstream;
  p.group = std::move(group);
  p.on_failure = f;
  fill_attempts(p, {u}, s.config.upstream.attempts);
  return p;
}

}  // namespace

UserName split_username(std::string_view name) {
  size_t dot = name.find('.');
  if (dot == std::string_view::npos) return {name, {}};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

RoutePlan plan_on_failure(const Snapshot& s, const OnFailure& f, std::string group) {
  switch (f.kind) {
    case OnFailure::Kind::direct: {
      RoutePlan p;
      p.kind = RoutePlan::Kind::direct;
      p.group = std::move(group);
      p.why = "on_failure direct";
      return p;
    }
    case OnFailure::Kind::upstream: {
      auto u = s.find_upstream(f.upstream_id);
      if (!u || !u->available())
        return refuse(0x01, 502, "on_failure upstream unavailable", std::move(group));
      RoutePlan p;
      p.kind = RoutePlan::Kind::upstream;
      p.group = std::move(group);
      p.on_failure = OnFailure{OnFailure::Kind::reject, {}};  // no chains: fail closed
      p.attempts.push_back(u);
      return p;
    }
    case OnFailure::Kind::unset:
    case OnFailure::Kind::reject:
      break;
  }
  return refuse(0x01, 502, "upstream unavailable", std::move(group));
}

bool carries_udp(const Upstream& u) { return u.config.type == UpstreamType::socks5; }

RoutePlan plan_route(const Snapshot& s, const UserName& name, const User* user,
                     RouteCursors& cursors, bool udp) {
  std::string group(name.group);
  if (!group.empty()) {
    if (user && user->groups &&
        std::find(user->groups->begin(), user->groups->end(), group) == user->groups->end())
      return refuse(0x02, 403, "group not allowed", group);
    const Group* g = s.find_group(group);
    std::vector<std::shared_ptr<const Upstream>> healthy;
    bool skipped = false;     // a healthy member that cannot carry what is asked
    bool any_capable = false;  // a member (healthy or not) that can
    if (g)
      for (const auto& m : g->members) {
        bool capable = !udp || carries_udp(*m);
        any_capable = any_capable || capable;
        if (!m->available()) continue;
        if (!capable) {
          skipped = true;
          continue;
        }
        healthy.push_back(m);
      }
    if (healthy.empty() && skipped && !any_capable) {
      // Members are up but none could ever carry UDP: the group's on_failure (else routing's)
      // decides, and a refusal says why (0x07), as an upstream route that cannot carry UDP
      // does. (UDP-capable members that are all down: "no healthy group member", below.)
      const OnFailure& f = g->on_failure.kind != OnFailure::Kind::unset
                               ? g->on_failure
                               : s.config.routing.on_failure;
      RoutePlan p = plan_on_failure(s, f, group);
      if (p.kind == RoutePlan::Kind::refuse) {
        p.socks_reply = 0x07;
        p.http_status = 400;
        p.why = "no group member carries UDP";
      }
      return p;
    }
    if (!healthy.empty()) {
      size_t start = 0;
      switch (g->policy) {
        case GroupPolicy::round_robin:
          start = cursors.round_robin[group]++ % healthy.size();
          break;
        case GroupPolicy::hash_user:
          start = fnv1a(name.base) % healthy.size();
          break;
        case GroupPolicy::least_conn:
          std::stable_sort(healthy.begin(), healthy.end(), [](const auto& a, const auto& b) {
            return a->health->active.load(std::memory_order_relaxed) <
                   b->health->active.load(std::memory_order_relaxed);
          });
          break;
      }
      std::rotate(healthy.begin(), healthy.begin() + static_cast<long>(start), healthy.end());
      RoutePlan p;
      p.kind = RoutePlan::Kind::upstream;
      p.group = group;
      p.on_failure = first_set(healthy.front()->config.on_failure, g->on_failure,
                               s.config.routing.on_failure);
      fill_attempts(p, healthy, s.config.upstream.attempts);
      return p;
    }
    if (!s.config.routing.group_fallback_default)
      return refuse(0x01, 502, "no healthy group member", group);
    // group_fallback: default -> the user's own route below.
  }
  if (user && user->external_proxy_id) {
    auto u = s.find_route(*user->external_proxy_id);
    if (!u) return refuse(0x01, 502, "external_proxy_id names no upstream", group);
    const Group* g = u->config.group.empty() ? nullptr : s.find_group(u->config.group);
    return single_upstream(s, u, g ? g->on_failure : OnFailure{}, group);
  }
  RoutePlan p;
  p.kind = RoutePlan::Kind::direct;
  p.group = group;
  return p;
}

}  // namespace up
