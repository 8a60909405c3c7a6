#pragma once
// Per-user state shared by every worker: how many tunnels a user has open (for
// max_connections), one rate limiter per direction (for bandwidth_bps) and whether their byte
// quota is spent. Lock-free: an atomic
// count and, per direction, a GCRA "theoretical arrival time" that every worker advances with
// a CAS after moving bytes. Entries live as long as the daemon (keyed by username), so
// snapshots and connections can hold plain pointers.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace up {

// Generic cell rate algorithm over bytes: a sender may run `burst_ns` ahead of the rate.
class RateLimiter {
 public:
  static constexpr uint64_t burst_ns = 100'000'000;  // 100 ms worth of bytes

  static constexpr uint64_t max_quantum = 64 * 1024;

  // Bytes that may go now at `bps` bits per second; 0 until a worthwhile slice has built up
  // (a quarter of the burst, at most 64 KiB, or all the caller `wants`), so a tunnel at its
  // cap moves fewer, larger chunks and waits for the worker's tick in between instead of
  // spinning on crumbs.
  uint64_t allowance(uint64_t now_ns, uint64_t bps, uint64_t wants = UINT64_MAX) const {
    uint64_t tat = tat_ns_.load(std::memory_order_relaxed);
    uint64_t ahead = tat > now_ns ? tat - now_ns : 0;
    if (ahead >= burst_ns) return 0;
    uint64_t bytes = bytes_in(burst_ns - ahead, bps);
    uint64_t quantum = std::min(max_quantum, std::max<uint64_t>(1, bytes_in(burst_ns / 4, bps)));
    return bytes >= std::min(quantum, wants) ? bytes : 0;
  }

  static uint64_t bytes_in(uint64_t ns, uint64_t bps) {
    return static_cast<uint64_t>(static_cast<unsigned __int128>(ns) * bps / 8'000'000'000ull);
  }

  void consume(uint64_t now_ns, uint64_t bytes, uint64_t bps) {
    uint64_t cost = static_cast<uint64_t>(static_cast<unsigned __int128>(bytes) *
                                          8'000'000'000ull / bps);
    uint64_t old = tat_ns_.load(std::memory_order_relaxed);
    uint64_t next;
    do {
      next = (old > now_ns ? old : now_ns) + cost;
    } while (!tat_ns_.compare_exchange_weak(old, next, std::memory_order_relaxed));
  }

 private:
  std::atomic<uint64_t> tat_ns_{0};
};

struct UserShared {
  std::atomic<uint32_t> active{0};  // tunnels open, all workers
  // Set by the management thread when the user's byte quota is spent: new tunnels are refused.
  std::atomic<bool> over_quota{false};
  RateLimiter up;
  RateLimiter down;
};

class UserBoard {
 public:
  UserShared* get(const std::string& user) {
    std::lock_guard lock(mu_);
    auto& slot = users_[user];
    if (!slot) slot = std::make_unique<UserShared>();
    return slot.get();
  }

 private:
  std::mutex mu_;
  // Hashed: start-up with 100,000 users asks once per user, and a tree's string compares and
  // node walks cost tens of milliseconds there.
  std::unordered_map<std::string, std::unique_ptr<UserShared>> users_;
};

}  // namespace up
