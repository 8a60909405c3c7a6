#pragma once
// Brute-force protection: failed logins are counted per client address; past half the limit
// each failure is answered later (a password guesser gets fewer tries per second), and an
// address with too many failures within the window is refused for a while, whatever it
// sends. Shared by all workers, sharded so concurrent logins rarely meet on one lock; touched
// once per login, never per byte.
#include <array>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace up {

struct AuthPolicy {
  uint32_t block_after = 20;  // failures within the window; 0 = never block
  uint64_t window_ms = 60000;
  uint64_t block_ms = 300000;
  uint64_t delay_step_ms = 100;  // slow-down per failure past block_after / 2
};

// What one more failure earns its address.
struct FailureVerdict {
  bool blocked_now = false;  // this failure started a block
  uint64_t delay_ms = 0;     // answer the failure this much later
};

class AuthGuard {
 public:
  using Address = std::array<uint8_t, 16>;  // IPv4 as v4-mapped

  static constexpr uint64_t max_delay_ms = 2000;

  bool blocked(const Address& a, uint64_t now_ms);
  FailureVerdict record_failure(const Address& a, uint64_t now_ms, const AuthPolicy& p);

 private:
  struct Entry {
    uint32_t failures = 0;
    uint64_t window_start_ms = 0;
    uint64_t blocked_until_ms = 0;
  };
  struct Hash {
    size_t operator()(const Address& a) const {
      uint64_t x, y;
      memcpy(&x, a.data(), 8);
      memcpy(&y, a.data() + 8, 8);
      return std::hash<uint64_t>{}(x * 0x9E3779B97F4A7C15ull ^ y);
    }
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<Address, Entry, Hash> entries;
  };
  static constexpr size_t shards = 16;
  static constexpr size_t max_entries_per_shard = 16384;
  Shard& shard(const Address& a) { return shards_[Hash{}(a) % shards]; }
  std::array<Shard, shards> shards_;
};

}  // namespace up
