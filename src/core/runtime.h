#pragma once
// What the workers share, all of it safe to read concurrently: the snapshot store (RCU), the
// password verifier (its own queue), the access log (one write per line) and the stop flag.
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace up {

class SnapshotStore;
class PasswordVerifier;
class AccessLog;
class Worker;

struct alignas(64) WorkerCounters {
  // Written by one worker only (relaxed load+store, no lock prefix), read by anyone.
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_active{0};
  std::atomic<uint64_t> bytes_up{0};
  std::atomic<uint64_t> bytes_down{0};
  std::atomic<uint64_t> auth_failures{0};

  static void add(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

struct Runtime {
  SnapshotStore* snapshots = nullptr;
  PasswordVerifier* verifier = nullptr;
  AccessLog* access_log = nullptr;
  std::atomic<bool> stopping{false};
  uint64_t stop_deadline_ms = 0;  // set before stopping becomes true
  std::vector<std::unique_ptr<Worker>> workers;
};

}  // namespace up
