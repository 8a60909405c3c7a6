#pragma once
// Route selection, docs/configuration.md#route-selection, as a pure function of the snapshot, the user and the worker's
// round-robin cursors. The result owns what it names (shared_ptrs), so a tunnel keeps its
// route across reloads.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "route/snapshot.h"

namespace up {

struct RoutePlan {
  enum class Kind : uint8_t { direct, upstream, refuse };
  Kind kind = Kind::direct;
  std::string group;  // the group the username selected, "" if none
  // Upstreams to try, in order (the first is the choice; then other members, then retries).
  std::vector<std::shared_ptr<const Upstream>> attempts;
  OnFailure on_failure;  // what applies once every attempt has failed
  // For refuse: the replies.
  uint8_t socks_reply = 0x01;
  int http_status = 502;
  const char* why = "";  // for the log
};

// Per-worker policy state: round-robin positions by group.
struct RouteCursors {
  StringMap<uint32_t> round_robin;
};

// "alice.us-east" -> {"alice", "us-east"}; no '.' -> {"alice", ""}.
struct UserName {
  std::string_view base;
  std::string_view group;
};
UserName split_username(std::string_view name);

// Whether an upstream relays UDP ASSOCIATE: plain socks5 only (http, https and socks5s
// cannot).
bool carries_udp(const Upstream& u);

// `user` is the authenticated user (null with auth: none). `udp`: a UDP ASSOCIATE; a group
// route then picks among the members that carry UDP only (when healthy members exist but the
// group has none that carries UDP, the group's on_failure decides; a refusal is 0x07; when
// those that do are all down, as when no member is healthy).
RoutePlan plan_route(const Snapshot& s, const UserName& name, const User* user,
                     RouteCursors& cursors, bool udp = false);

// What `on_failure` says to do now (after attempts failed, or when the route's upstream is
// unavailable from the start): direct, another upstream (single attempt, then reject), or
// refuse.
RoutePlan plan_on_failure(const Snapshot& s, const OnFailure& f, std::string group);

}  // namespace up
