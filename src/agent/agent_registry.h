#pragma once
// The gateway's live view of its reverse agents (docs/agent-protocol.md): which agent has an
// authenticated control link (a "session"), and the idle reverse connections each one keeps.
// Shared by every worker and the management thread behind one mutex, touched once per link
// event and once per tunnel hand-over, never per byte.
//
// Why a shared pool rather than one per worker: agents' connections land on any worker
// (SO_REUSEPORT hashes the 4-tuple), while the user who needs one is on some worker. An idle
// reverse connection has no ring operation in flight (its worker armed nothing after the
// AUTH_RESULT went out), so it is only an fd and a TLS state machine, and any worker may take
// it and submit on its own ring. See docs/internals.md, "Reverse agents".
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/tls_io.h"

namespace up {

struct UpstreamHealth;

// An authenticated reverse connection waiting for a tunnel: nothing of it is in any ring.
struct IdleReverse {
  int fd = -1;
  std::unique_ptr<TlsIo> tls;
};

struct AgentInfo {
  std::string id;
  std::string group;
  std::string address;  // the control link's peer
  std::string version;  // SOFTWARE from its HELLO
  size_t idle = 0;
  uint32_t tunnels = 0;        // open now
  uint64_t tunnels_total = 0;  // since the gateway started
  uint64_t connected_since_s = 0;  // unix time
};

class AgentRegistry {
 public:
  AgentRegistry() = default;
  ~AgentRegistry();  // closes the idle connections left
  AgentRegistry(const AgentRegistry&) = delete;
  AgentRegistry& operator=(const AgentRegistry&) = delete;

  // A control link authenticated: the agent's new session (never 0). One it replaces ends:
  // its idle connections are closed, and its link sees current() differ and closes.
  uint64_t connect(const std::string& id, const std::string& group, std::string address,
                   std::string version, UpstreamHealth* health);
  // The session ends (link closed, heartbeat lost, agent removed or kicked); a no-op when
  // `session` is no longer the agent's current one. The agent leaves its group at once.
  void disconnect(const std::string& id, uint64_t session);
  // Ends whatever session the agent has (uringproxyctl agent kick); false when none.
  bool kick(const std::string& id);
  uint64_t current(const std::string& id) const;

  // A reverse link of `session` authenticated and its AUTH_RESULT is out. False (the caller
  // closes it) when that session has ended meanwhile.
  bool add_idle(const std::string& id, uint64_t session, IdleReverse&& r);
  std::optional<IdleReverse> take_idle(const std::string& id);

  // A tunnel through the agent started / ended (uringproxyctl agents, metrics).
  void tunnel_started(const std::string& id);
  void tunnel_ended(const std::string& id);
  uint64_t next_tunnel_id() { return tunnel_ids_.fetch_add(1, std::memory_order_relaxed); }

  // Tunnels waiting for an idle connection of a connected agent (upstream/agent_dial.cpp).
  // While any wait, a reverse connection joining a pool wakes every worker's waiters at once
  // rather than on their next tick (100 ms later).
  void waiting_started() { waiting_.fetch_add(1, std::memory_order_relaxed); }
  void waiting_ended() { waiting_.fetch_sub(1, std::memory_order_relaxed); }
  bool anyone_waiting() const { return waiting_.load(std::memory_order_relaxed) != 0; }

  std::vector<AgentInfo> list() const;

 private:
  struct Entry {
    uint64_t session = 0;  // 0: not connected
    std::string group;
    std::string address;
    std::string version;
    uint64_t connected_since_s = 0;
    UpstreamHealth* health = nullptr;
    std::deque<IdleReverse> idle;
    uint32_t tunnels = 0;
    uint64_t tunnels_total = 0;
  };
  void end_session(Entry& e);  // under mu_

  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  uint64_t next_session_ = 1;
  std::atomic<uint32_t> waiting_{0};
  std::atomic<uint64_t> tunnel_ids_{1};
};

}  // namespace up
