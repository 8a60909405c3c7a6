#pragma once
// Live state of an upstream proxy, shared by every snapshot that names it (by id) and by the
// health checker. Workers read `up` and count their tunnels without locks; a worker whose
// attempt fails marks it down at once, and only a passing probe brings it back.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace up {

struct UpstreamHealth {
  std::atomic<bool> up{true};
  std::atomic<uint32_t> active{0};         // open tunnels through it, all workers (least_conn)
  std::atomic<uint64_t> failures{0};       // attempts that failed, ever
  std::atomic<uint64_t> marked_down_ms{0};  // when a worker or probe last marked it down

  void mark_down(uint64_t now_ms) {
    failures.fetch_add(1, std::memory_order_relaxed);
    marked_down_ms.store(now_ms, std::memory_order_relaxed);
    up.store(false, std::memory_order_release);
  }
  bool is_up() const { return up.load(std::memory_order_acquire); }
};

// Owns every UpstreamHealth ever created, keyed by upstream id. Entries live as long as the
// daemon (ids are few), so snapshots can hold plain pointers to them.
class HealthBoard {
 public:
  UpstreamHealth* get(const std::string& id) {
    std::lock_guard lock(mu_);
    auto& slot = entries_[id];
    if (!slot) slot = std::make_unique<UpstreamHealth>();
    return slot.get();
  }
  // A reverse agent's entry ("agent:ID"): down until its control connection authenticates
  // (agent/agent_registry.cpp marks it up and down; no probe touches it).
  UpstreamHealth* get_agent(const std::string& member_id) {
    std::lock_guard lock(mu_);
    auto& slot = entries_[member_id];
    if (!slot) {
      slot = std::make_unique<UpstreamHealth>();
      slot->up.store(false, std::memory_order_relaxed);
    }
    return slot.get();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<UpstreamHealth>> entries_;
};

}  // namespace up
