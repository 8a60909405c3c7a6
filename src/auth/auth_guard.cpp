#include "auth/auth_guard.h"

namespace up {

bool AuthGuard::blocked(const Address& a, uint64_t now_ms) {
  Shard& s = shard(a);
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(a);
  return it != s.entries.end() && it->second.blocked_until_ms > now_ms;
}

bool AuthGuard::record_failure(const Address& a, uint64_t now_ms, const AuthPolicy& p) {
  if (p.block_after == 0) return false;
  Shard& s = shard(a);
  std::lock_guard lock(s.mu);
  if (s.entries.size() >= max_entries_per_shard && !s.entries.count(a)) {
    // Bounded memory under a spray of addresses: forget entries that no longer matter.
    for (auto it = s.entries.begin(); it != s.entries.end();) {
      bool stale = it->second.blocked_until_ms <= now_ms &&
                   now_ms - it->second.window_start_ms > p.window_ms;
      it = stale ? s.entries.erase(it) : std::next(it);
    }
    if (s.entries.size() >= max_entries_per_shard) return false;
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
    return true;
  }
  return false;
}

}  // namespace up
