#include "auth/auth_guard.h"

#include <algorithm>

namespace up {

bool AuthGuard::blocked(const Address& a, uint64_t now_ms) {
  Shard& s = shard(a);
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(a);
  return it != s.entries.end() && it->second.blocked_until_ms > now_ms;
}

FailureVerdict AuthGuard::record_failure(const Address& a, uint64_t now_ms,
                                         const AuthPolicy& p) {
  if (p.block_after == 0) return {};
  Shard& s = shard(a);
  std::lock_guard lock(s.mu);
  if (s.entries.size() >= max_entries_per_shard && !s.entries.count(a)) {
    // Bounded memory under a spray of addresses: forget entries that no longer matter.
    for (auto it = s.entries.begin(); it != s.entries.end();) {
      bool stale = it->second.blocked_until_ms <= now_ms &&
                   now_ms - it->second.window_start_ms > p.window_ms;
      it = stale ? s.entries.erase(it) : std::next(it);
    }
    if (s.entries.size() >= max_entries_per_shard) return {};
  }
  Entry& e = s.entries[a];
  if (now_ms - e.window_start_ms > p.window_ms) {
    e.window_start_ms = now_ms;
    e.failures = 0;
  }
  if (++e.failures >= p.block_after && e.blocked_until_ms <= now_ms) {
    e.blocked_until_ms = now_ms + p.block_ms;
    e.failures = 0;
    e.window_start_ms = now_ms;
    return {true, 0};
  }
  uint32_t half = p.block_after / 2;
  if (e.failures <= half) return {};
  return {false, std::min<uint64_t>(uint64_t{e.failures - half} * p.delay_step_ms, max_delay_ms)};
}

}  // namespace up
