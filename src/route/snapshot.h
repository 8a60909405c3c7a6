#pragma once
// Everything a worker needs to decide about a new connection, immutable once published.
// Workers read it without locks; connections copy what they keep (a snapshot may be reclaimed
// after the worker's next loop turn) — upstreams are shared_ptrs so a tunnel keeps the route
// it started with across reloads.
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "route/acl.h"
#include "route/upstream_health.h"
#include "route/user_limits.h"
#include "uringproxy/config.h"

namespace up {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct Upstream {
  UpstreamProxy config;
  UpstreamHealth* health = nullptr;  // owned by the HealthBoard
  std::shared_ptr<SSL_CTX> tls;      // socks5s / https only
  bool has_tls() const { return tls != nullptr; }
  bool available() const { return config.enabled && health->is_up(); }
};

struct Group {
  std::string name;
  GroupPolicy policy = GroupPolicy::round_robin;
  OnFailure on_failure;
  std::vector<std::shared_ptr<const Upstream>> members;  // every upstream naming the group
};

struct Snapshot {
  uint64_t generation = 0;
  Config config;
  StringMap<User> users;
  StringMap<std::shared_ptr<const Upstream>> upstreams;
  StringMap<Group> groups;
  Acl acl;
  StringMap<UserAcl> user_acls;       // only users with their own allow/deny
  StringMap<UserShared*> user_state;  // every user; owned by the UserBoard
  StringMap<std::shared_ptr<SSL_CTX>> listener_tls;  // by listener name, TLS listeners only
  StringMap<std::string> uuid_users;  // VLESS id (canonical text) -> username

  const User* find_user(std::string_view name) const {
    auto it = users.find(name);
    return it == users.end() ? nullptr : &it->second;
  }
  std::shared_ptr<const Upstream> find_upstream(std::string_view id) const {
    auto it = upstreams.find(id);
    return it == upstreams.end() ? nullptr : it->second;
  }
  const UserAcl* find_user_acl(std::string_view name) const {
    auto it = user_acls.find(name);
    return it == user_acls.end() ? nullptr : &it->second;
  }
  UserShared* find_user_state(std::string_view name) const {
    auto it = user_state.find(name);
    return it == user_state.end() ? nullptr : it->second;
  }
  const User* find_user_by_uuid(std::string_view uuid) const {
    auto it = uuid_users.find(uuid);
    return it == uuid_users.end() ? nullptr : find_user(it->second);
  }
  std::shared_ptr<SSL_CTX> find_listener_tls(std::string_view name) const {
    auto it = listener_tls.find(name);
    return it == listener_tls.end() ? nullptr : it->second;
  }
  const Group* find_group(std::string_view name) const {
    auto it = groups.find(name);
    return it == groups.end() ? nullptr : &it->second;
  }
};

// Builds a snapshot from a validated ConfigSet: TLS contexts are created here (on the
// management thread: they read CA files). Returns null and appends to `errors` on failure.
std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, uint64_t generation,
                                         HealthBoard& health, UserBoard& users,
                                         std::vector<std::string>& errors);

}  // namespace up
