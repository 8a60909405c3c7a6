#include "route/snapshot.h"

#include "config/json_reader.h"
#include "tls/server_context.h"
#include "upstream/tls_layer.h"

namespace up {

std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, uint64_t generation,
                                         HealthBoard& health, UserBoard& user_board,
                                         std::vector<std::string>& errors) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  s->config = set.config;
  s->users.reserve(set.users.size());
  for (const User& u : set.users) {
    s->users.emplace(u.username, u);
    s->user_state.emplace(u.username, user_board.get(u.username));
    if (!u.uuid.empty()) s->uuid_users.emplace(u.uuid, u.username);
    if (!u.allow.empty() || !u.deny.empty()) {
      UserAcl& a = s->user_acls[u.username];
      for (const auto& e : u.allow) a.allow.add(e);
      for (const auto& e : u.deny) a.deny.add(e);
    }
  }
  s->acl = Acl(set.config.acl.deny_private, set.config.acl.allow, set.config.acl.deny,
               set.config.acl.deny_ports);
  size_t before = errors.size();
  for (size_t i = 0; i < set.proxies.size(); ++i) {
    const UpstreamProxy& p = set.proxies[i];
    auto u = std::make_shared<Upstream>();
    u->config = p;
    u->health = health.get(p.id);
    if (p.type == UpstreamType::socks5s || p.type == UpstreamType::https) {
      std::string err;
      u->tls = make_client_tls_context(p.tls.verify, p.tls.ca_file, err);
      // A snapshot is built only from a set that loaded cleanly: i is the index in the file.
      if (!u->tls)
        errors.push_back(config::display_path(set.config.proxies_file) + ": " +
                         upstream_where(p.id, i) +
                         (p.tls.ca_file.empty() ? ".tls: " : ".tls.ca_file: ") + err);
    }
    s->upstreams.emplace(p.id, u);
    if (!p.group.empty()) {
      Group& g = s->groups[p.group];
      g.name = p.group;
      g.members.push_back(u);
    }
  }
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
  for (auto& [name, g] : s->groups) {
    if (auto it = set.config.groups.find(name); it != set.config.groups.end()) {
      g.policy = it->second.policy;
      g.on_failure = it->second.on_failure;
    }
  }
  if (errors.size() != before) return nullptr;
  return s;
}

}  // namespace up
