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

struct Runtime {
  SnapshotStore* snapshots = nullptr;
  PasswordVerifier* verifier = nullptr;
  AccessLog* access_log = nullptr;
  std::atomic<bool> stopping{false};
  uint64_t stop_deadline_ms = 0;  // set before stopping becomes true
  std::vector<std::unique_ptr<Worker>> workers;
};

}  // namespace up
