#include "agent/link_planner.h"

#include <algorithm>

namespace up {

uint64_t LinkPlanner::backoff(uint32_t step) {
  uint64_t d = std::min(cap_ms, base_ms << std::min<uint32_t>(step, 10));
  return d / 2 + rng_() % (d / 2 + 1);
}

void LinkPlanner::dial_failed(uint64_t now_ms) {
  connecting_ = false;
  next_control_ = now_ms + backoff(++control_step_);
}

LinkActions LinkPlanner::turn(uint64_t now, const LinkObservation& seen) {
  LinkActions act;
  if (seen.control == LinkObservation::down) {
    if (was_up_) {
      act.reconnect_everything = true;
      control_step_ = 0;
      next_control_ = now + backoff(control_step_);
    } else if (connecting_) {  // the dial failed (TCP, TLS or the gateway refused it)
      next_control_ = now + backoff(++control_step_);
    }
    was_up_ = connecting_ = false;
    if (now < next_control_) return act;
    connecting_ = true;
    act.dial_control = true;
    return act;
  }
  if (seen.control != LinkObservation::up) return act;
  if (!was_up_) {
    was_up_ = true;
    connecting_ = false;
    control_step_ = reverse_step_ = 0;
    next_reverse_ = 0;
    seen_failures_ = seen.failures;
  }
  if (seen.failures != seen_failures_) {
    seen_failures_ = seen.failures;
    next_reverse_ = now + backoff(++reverse_step_);
  }
  int target = static_cast<int>(idle_target_);
  if (seen.idle >= target) reverse_step_ = 0;
  int missing = target - seen.idle - seen.opening;
  if (missing > 0 && now >= next_reverse_) act.open_reverse = missing;
  return act;
}

}  // namespace up
