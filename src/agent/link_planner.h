#pragma once
// When agent mode opens links (the supervisor's decisions, agent/agent_main.cpp), kept apart
// from threads and sockets so it can be tested alone:
//   - control link down: after a jittered, exponentially growing delay (0.25-0.5 s, doubling
//     to 15-30 s), dial it again; when it was up, first close every idle reverse link
//     ("reconnect everything": they belong to a session the gateway has ended);
//   - control link up: top the reverse links up to idle_connections, backing off likewise
//     when they fail before authenticating.
// The jitter keeps a fleet of agents from reconnecting in step after a gateway restart.
#include <cstdint>
#include <random>

namespace up {

// What the links report (agent/gateway_links.h), read once per turn.
struct LinkObservation {
  enum Control { down, connecting, up } control = down;
  int idle = 0;               // reverse links authenticated, waiting for a tunnel
  int opening = 0;            // reverse links dialled, not yet authenticated
  uint32_t failures = 0;      // reverse links closed before authenticating, ever
};

struct LinkActions {
  bool reconnect_everything = false;  // the session ended: close every idle reverse link
  bool dial_control = false;          // resolve the gateway and dial the control link
  int open_reverse = 0;               // reverse links to open now
};

class LinkPlanner {
 public:
  LinkPlanner(uint32_t idle_target, uint64_t seed) : idle_target_(idle_target), rng_(seed) {}

  LinkActions turn(uint64_t now_ms, const LinkObservation& seen);
  // idle_connections changed (a reload): the next turns top up to, or stop short of, it.
  void set_idle_target(uint32_t n) { idle_target_ = n; }
  // The control dial of the last turn did not start (the gateway's name did not resolve).
  void dial_failed(uint64_t now_ms);
  // A delay in [d/2, d], d = 500 ms * 2^step, capped at 30 s.
  uint64_t backoff(uint32_t step);

  static constexpr uint64_t base_ms = 500;
  static constexpr uint64_t cap_ms = 30000;

 private:
  uint32_t idle_target_;
  std::mt19937_64 rng_;
  bool was_up_ = false;
  bool connecting_ = false;
  uint32_t control_step_ = 0;
  uint64_t next_control_ = 0;
  uint32_t reverse_step_ = 0;
  uint64_t next_reverse_ = 0;
  uint32_t seen_failures_ = 0;
};

}  // namespace up
