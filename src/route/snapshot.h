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

// A reverse agent (agents_file, or the store's table agents), and the group member that stands
// for it: an Upstream of type agent whose config.id is "agent:ID" (the access log's route) and
// config.name the id; its health is up while its control connection is
// (agent/agent_registry.h).
struct AgentEntry {
  Agent config;
  std::shared_ptr<const Upstream> member;
};

struct Group {
  std::string name;
  GroupPolicy policy = GroupPolicy::round_robin;
  OnFailure on_failure;
  std::vector<std::shared_ptr<const Upstream>> members;  // every upstream naming the group
};

// One user as a worker sees them.
struct UserRecord {
  User user;
  UserShared* state = nullptr;          // owned by the UserBoard
  std::shared_ptr<const UserAcl> acl;   // null unless the user has their own allow/deny
};

// The users of a snapshot. A live edit of one user must not copy 100,000 of them: snapshots
// share an immutable base and each keeps the users changed since that base in a small overlay
// (null = deleted). The overlay is folded into a new base once it grows large, so lookups stay
// two hash probes and an edit copies at most the overlay.
class UserTable {
 public:
  using Base = StringMap<UserRecord>;
  using Overlay = StringMap<std::shared_ptr<const UserRecord>>;

  using Uuids = StringMap<std::string>;  // VLESS id -> username

  UserTable() : base_(std::make_shared<const Base>()), base_uuids_(std::make_shared<const Uuids>()) {}
  explicit UserTable(Base base);

  const UserRecord* find(std::string_view name) const {
    if (!overlay_.empty()) {
      auto it = overlay_.find(name);
      if (it != overlay_.end()) return it->second.get();
    }
    auto it = base_->find(name);
    return it == base_->end() ? nullptr : &it->second;
  }
  // The user whose VLESS id (canonical text) is `uuid`.
  const UserRecord* find_by_uuid(std::string_view uuid) const {
    const std::string* name = nullptr;
    if (auto it = uuid_overlay_.find(uuid); it != uuid_overlay_.end()) {
      name = &it->second;
    } else if (auto jt = base_uuids_->find(uuid); jt != base_uuids_->end()) {
      name = &jt->second;
    }
    const UserRecord* r = name ? find(*name) : nullptr;
    // An entry outlives an edit that deleted the user or changed their uuid: check it.
    return r && r->user.uuid == uuid ? r : nullptr;
  }
  // The same users with `name` replaced by `record` (null: removed).
  UserTable with(const std::string& name, std::shared_ptr<const UserRecord> record) const;
  size_t overlay_size() const { return overlay_.size(); }
  bool shares_base_with(const UserTable& o) const { return base_ == o.base_; }

 private:
  std::shared_ptr<const Base> base_;
  std::shared_ptr<const Uuids> base_uuids_;
  Overlay overlay_;
  Uuids uuid_overlay_;  // ids of users in the overlay
};

struct Snapshot {
  uint64_t generation = 0;
  Config config;
  UserTable users;
  StringMap<std::shared_ptr<const Upstream>> upstreams;
  StringMap<Group> groups;
  StringMap<AgentEntry> agents;  // by agent id
  Acl acl;
  StringMap<std::shared_ptr<SSL_CTX>> listener_tls;  // by listener name, TLS listeners only

  const User* find_user(std::string_view name) const {
    const UserRecord* r = users.find(name);
    return r ? &r->user : nullptr;
  }
  const User* find_user_by_uuid(std::string_view uuid) const {
    const UserRecord* r = users.find_by_uuid(uuid);
    return r ? &r->user : nullptr;
  }
  std::shared_ptr<SSL_CTX> find_listener_tls(std::string_view name) const {
    auto it = listener_tls.find(name);
    return it == listener_tls.end() ? nullptr : it->second;
  }
  std::shared_ptr<const Upstream> find_upstream(std::string_view id) const {
    auto it = upstreams.find(id);
    return it == upstreams.end() ? nullptr : it->second;
  }
  // What a user's external_proxy_id names: an upstream, or an agent as "agent:ID".
  std::shared_ptr<const Upstream> find_route(std::string_view id) const {
    if (auto u = find_upstream(id)) return u;
    if (!id.starts_with(agent_route_prefix)) return nullptr;
    const AgentEntry* a = find_agent(id.substr(agent_route_prefix.size()));
    return a ? a->member : nullptr;
  }
  const UserAcl* find_user_acl(std::string_view name) const {
    const UserRecord* r = users.find(name);
    return r ? r->acl.get() : nullptr;
  }
  UserShared* find_user_state(std::string_view name) const {
    const UserRecord* r = users.find(name);
    return r ? r->state : nullptr;
  }
  const AgentEntry* find_agent(std::string_view id) const {
    auto it = agents.find(id);
    return it == agents.end() ? nullptr : &it->second;
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

// The snapshot after a live edit of the upstreams: the users are shared with `prev`. Null (and
// `errors`) when a TLS context cannot be made.
std::unique_ptr<Snapshot> snapshot_with_proxies(const Snapshot& prev, uint64_t generation,
                                                const std::vector<UpstreamProxy>& proxies,
                                                HealthBoard& health,
                                                std::vector<std::string>& errors);

// The snapshot after a live edit of the agents (the PostgreSQL store's): the users and the
// upstreams are shared with `prev` (no TLS context is made again); the groups are rebuilt from
// `proxies` (the upstreams of `prev`, in their order) and `agents`.
std::unique_ptr<Snapshot> snapshot_with_agents(const Snapshot& prev, uint64_t generation,
                                               const std::vector<UpstreamProxy>& proxies,
                                               const std::vector<Agent>& agents,
                                               HealthBoard& health);

// The snapshot after a live edit of one user, `name` (`user` null: deleted): everything else,
// the other users included, is shared with `prev` rather than rebuilt.
std::unique_ptr<Snapshot> snapshot_with_user(const Snapshot& prev, uint64_t generation,
                                             const std::string& name, const User* user,
                                             UserBoard& users);

}  // namespace up
