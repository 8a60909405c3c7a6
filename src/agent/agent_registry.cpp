#include "agent/agent_registry.h"

#include <unistd.h>

#include <ctime>

#include "route/upstream_health.h"

namespace up {

namespace {
void close_idle(IdleReverse& r) {
  // No ring operation refers to an idle connection, so a plain close is safe from any thread.
  if (r.fd >= 0) close(r.fd);
  r.fd = -1;
  r.tls.reset();
}
}  // namespace

AgentRegistry::~AgentRegistry() {
  for (auto& [id, e] : entries_)
    for (auto& r : e.idle) close_idle(r);
}

void AgentRegistry::end_session(Entry& e) {
  e.session = 0;
  if (e.health) e.health->up.store(false, std::memory_order_release);
  for (auto& r : e.idle) close_idle(r);
  e.idle.clear();
}

uint64_t AgentRegistry::connect(const std::string& id, const std::string& group,
                                std::string address, std::string version,
                                UpstreamHealth* health) {
  std::lock_guard lock(mu_);
  Entry& e = entries_[id];
  if (e.session) end_session(e);
  e.session = next_session_++;
  e.group = group;
  e.address = std::move(address);
  e.version = std::move(version);
  e.connected_since_s = static_cast<uint64_t>(time(nullptr));
  e.health = health;
  if (health) health->up.store(true, std::memory_order_release);
  return e.session;
}

void AgentRegistry::disconnect(const std::string& id, uint64_t session) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.session != session || session == 0) return;
  end_session(it->second);
}

bool AgentRegistry::kick(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.session == 0) return false;
  end_session(it->second);
  return true;
}

uint64_t AgentRegistry::current(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second.session;
}

bool AgentRegistry::add_idle(const std::string& id, uint64_t session, IdleReverse&& r) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.session != session || session == 0) return false;
  it->second.idle.push_back(std::move(r));
  return true;
}

std::optional<IdleReverse> AgentRegistry::take_idle(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.session == 0 || it->second.idle.empty())
    return std::nullopt;
  // Oldest first, so every idle connection is used in turn and none rots unnoticed.
  IdleReverse r = std::move(it->second.idle.front());
  it->second.idle.pop_front();
  return r;
}

void AgentRegistry::tunnel_started(const std::string& id) {
  std::lock_guard lock(mu_);
  Entry& e = entries_[id];
  ++e.tunnels;
  ++e.tunnels_total;
}

void AgentRegistry::tunnel_ended(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it != entries_.end() && it->second.tunnels) --it->second.tunnels;
}

std::vector<AgentInfo> AgentRegistry::list() const {
  std::lock_guard lock(mu_);
  std::vector<AgentInfo> out;
  for (const auto& [id, e] : entries_) {
    AgentInfo i;
    i.id = id;
    i.group = e.group;
    if (e.session) {
      i.address = e.address;
      i.version = e.version;
      i.connected_since_s = e.connected_since_s;
    }
    i.idle = e.idle.size();
    i.tunnels = e.tunnels;
    i.tunnels_total = e.tunnels_total;
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace up
