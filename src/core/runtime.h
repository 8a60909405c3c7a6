#pragma once
// What the workers share, all of it safe to read concurrently: the snapshot store (RCU), the
// password verifier (its own queue), the access log (a buffer per worker) and the stop flag.
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace up {

class SnapshotStore;
class PasswordVerifier;
class AccessLog;
class Worker;
class UserBoard;
class AuthGuard;
class AgentRegistry;

struct Runtime {
  SnapshotStore* snapshots = nullptr;
  PasswordVerifier* verifier = nullptr;
  AccessLog* access_log = nullptr;
  UserBoard* users = nullptr;       // per-user limits state, all workers
  AuthGuard* auth_guard = nullptr;  // brute-force protection, all workers
  AgentRegistry* agents = nullptr;  // connected reverse agents and their idle connections
  // The global connection cap (limits.max_connections, else from the fd limit).
  std::atomic<uint32_t> connections{0};
  std::atomic<uint32_t> max_connections{0};
  std::atomic<uint64_t> refused_over_cap{0};
  std::atomic<uint64_t> auth_blocked{0};
  // How plain tunnels relay (relay/splice_relay.cpp). URINGPROXY_RELAY=splice or =buffers
  // pins one path, for measuring them against each other (bench/RESULTS.md).
  enum class Relay : uint8_t {
    adaptive,  // small reads through provided buffers (recv/send), bulk through splice
    splice,    // readiness poll + splice(2) only
    buffers,   // provided-buffer recv/send only
  };
  Relay relay = Relay::adaptive;
  // Provided buffers per worker for the small-message path (a power of two);
  // URINGPROXY_RELAY_BUFFERS lowers it so tests can run the pool dry.
  unsigned relay_buffers = 128;
  bool ktls = false;  // the kernel has the TLS ULP (tls/ktls_probe.h)
  std::atomic<bool> stopping{false};
  uint64_t stop_deadline_ms = 0;  // set before stopping becomes true
  std::atomic<unsigned> workers_shut{0};  // workers whose listeners are shut (Worker::begin_stop)
  std::vector<std::unique_ptr<Worker>> workers;
};

}  // namespace up
