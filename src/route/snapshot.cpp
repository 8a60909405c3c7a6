#include "route/snapshot.h"

#include <algorithm>

#include "config/json_reader.h"
#include "tls/server_context.h"
#include "upstream/tls_layer.h"

namespace up {

namespace {

UserRecord user_record(const User& u, UserBoard& board) {
  UserRecord r;
  r.user = u;
  r.state = board.get(u.username);
  if (!u.allow.empty() || !u.deny.empty()) {
    auto a = std::make_shared<UserAcl>();
    for (const auto& e : u.allow) a->allow.add(e);
    for (const auto& e : u.deny) a->deny.add(e);
    r.acl = std::move(a);
  }
  return r;
}

// The agents of agents_file as group members (route/snapshot.h, AgentEntry).
StringMap<AgentEntry> agent_entries(const std::vector<Agent>& agents, HealthBoard& health) {
  StringMap<AgentEntry> out;
  for (const Agent& a : agents) {
    auto u = std::make_shared<Upstream>();
    u->config.id = "agent:" + a.id;
    u->config.name = a.id;
    u->config.type = UpstreamType::agent;
    u->config.group = a.group;
    u->config.enabled = a.enabled;
    u->health = health.get_agent(u->config.id);
    out.emplace(a.id, AgentEntry{a, std::move(u)});
  }
  return out;
}

// Groups: the upstreams naming one, in the proxies' order (hash_user and round robin depend on
// it), then the agents beside them; the group's policy picks among all.
void add_groups(Snapshot& s, const std::vector<UpstreamProxy>& proxies) {
  for (const UpstreamProxy& p : proxies) {
    if (p.group.empty()) continue;
    auto u = s.upstreams.find(p.id);
    if (u == s.upstreams.end()) continue;
    Group& g = s.groups[p.group];
    g.name = p.group;
    g.members.push_back(u->second);
  }
  for (const auto& [id, a] : s.agents) {
    Group& g = s.groups[a.config.group];
    g.name = a.config.group;
    g.members.push_back(a.member);
  }
  for (auto& [name, g] : s.groups) {
    if (auto it = s.config.groups.find(name); it != s.config.groups.end()) {
      g.policy = it->second.policy;
      g.on_failure = it->second.on_failure;
    }
  }
}

// Upstreams and groups, from the proxies, the agents and the config's group settings.
bool add_routes(Snapshot& s, const std::vector<UpstreamProxy>& proxies, HealthBoard& health,
                std::vector<std::string>& errors) {
  const std::string& proxies_file = s.config.proxies_file;
  size_t before = errors.size();
  for (size_t i = 0; i < proxies.size(); ++i) {
    const UpstreamProxy& p = proxies[i];
    auto u = std::make_shared<Upstream>();
    u->config = p;
    u->health = health.get(p.id);
    if (p.type == UpstreamType::socks5s || p.type == UpstreamType::https) {
      std::string err;
      u->tls = make_client_tls_context(p.tls.verify, p.tls.ca_file, err);
      // A snapshot is built only from proxies that loaded cleanly: i is the index in the file.
      if (!u->tls)
        errors.push_back(config::display_path(proxies_file) + ": " +
                         upstream_where(p.id, i) +
                         (p.tls.ca_file.empty() ? ".tls: " : ".tls.ca_file: ") + err);
    }
    s.upstreams.emplace(p.id, u);
  }
  add_groups(s, proxies);
  return errors.size() == before;
}

}  // namespace

UserTable::UserTable(Base base) : base_(std::make_shared<const Base>(std::move(base))) {
  Uuids uuids;
  for (const auto& [name, r] : *base_)
    if (!r.user.uuid.empty()) uuids.emplace(r.user.uuid, name);
  base_uuids_ = std::make_shared<const Uuids>(std::move(uuids));
}

UserTable UserTable::with(const std::string& name, std::shared_ptr<const UserRecord> record) const {
  UserTable t = *this;  // shares the base; copies the overlay
  if (record && !record->user.uuid.empty()) t.uuid_overlay_[record->user.uuid] = name;
  t.overlay_[name] = std::move(record);
  // Every edit copies the overlay, and folding copies everyone: fold once the overlay is a
  // 32nd of the base, so an edit costs O(n/32) pointer copies at worst and O(n) once in a while.
  if (t.overlay_.size() > std::max<size_t>(1024, base_->size() / 32)) {
    Base merged = *base_;
    for (auto& [n, r] : t.overlay_) {
      if (r)
        merged.insert_or_assign(n, *r);
      else
        merged.erase(n);
    }
    return UserTable(std::move(merged));
  }
  return t;
}

std::unique_ptr<Snapshot> snapshot_with_user(const Snapshot& prev, uint64_t generation,
                                             const std::string& name, const User* user,
                                             UserBoard& users) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  s->config = prev.config;
  s->upstreams = prev.upstreams;  // shared_ptrs: TLS contexts and health are kept, not rebuilt
  s->groups = prev.groups;
  s->agents = prev.agents;
  s->acl = prev.acl;
  s->listener_tls = prev.listener_tls;
  s->users = prev.users.with(
      name, user ? std::make_shared<const UserRecord>(user_record(*user, users)) : nullptr);
  return s;
}

std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, uint64_t generation,
                                         HealthBoard& health, UserBoard& user_board,
                                         std::vector<std::string>& errors) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  s->config = set.config;
  UserTable::Base users;
  users.reserve(set.users.size());
  for (const User& u : set.users) users.emplace(u.username, user_record(u, user_board));
  s->users = UserTable(std::move(users));
  s->acl = Acl(set.config.acl.deny_private, set.config.acl.allow, set.config.acl.deny,
               set.config.acl.deny_ports);
  size_t before = errors.size();
  s->agents = agent_entries(set.agents, health);
  add_routes(*s, set.proxies, health, errors);
  for (size_t i = 0; i < set.config.listeners.size(); ++i) {
    const ListenerConfig& l = set.config.listeners[i];
    if (!l.tls) continue;
    std::string err;
    std::vector<std::string> alpn;
    if (l.protocol == Protocol::http) alpn.push_back("http/1.1");
    auto ctx = make_server_tls_context(
        l.tls->cert, l.tls->key, alpn, listener_ticket_keys(),
        "listeners[" + std::to_string(i) + "] (" + l.name + ").tls", err);
    if (!ctx) errors.push_back(config::display_path(set.config.path) + ": " + err);
    s->listener_tls.emplace(l.name, std::move(ctx));
  }
  if (errors.size() != before) return nullptr;
  return s;
}

std::unique_ptr<Snapshot> snapshot_with_proxies(const Snapshot& prev, uint64_t generation,
                                                const std::vector<UpstreamProxy>& proxies,
                                                HealthBoard& health,
                                                std::vector<std::string>& errors) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  s->config = prev.config;
  s->users = prev.users;
  s->agents = prev.agents;
  s->acl = prev.acl;
  s->listener_tls = prev.listener_tls;
  if (!add_routes(*s, proxies, health, errors)) return nullptr;
  return s;
}

std::unique_ptr<Snapshot> snapshot_with_agents(const Snapshot& prev, uint64_t generation,
                                               const std::vector<UpstreamProxy>& proxies,
                                               const std::vector<Agent>& agents,
                                               HealthBoard& health) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  s->config = prev.config;
  s->users = prev.users;
  s->upstreams = prev.upstreams;  // TLS contexts and health kept: only the groups are rebuilt
  s->acl = prev.acl;
  s->listener_tls = prev.listener_tls;
  s->agents = agent_entries(agents, health);
  add_groups(*s, proxies);
  return s;
}

}  // namespace up
