#include "route/health_checker.h"

#include <algorithm>

#include "core/clock.h"
#include "core/log.h"
#include "upstream/upstream_probe.h"

namespace up {

HealthChecker::HealthChecker() : thread_([this] { run(); }) {}

HealthChecker::~HealthChecker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void HealthChecker::update(const Snapshot& s) {
  std::lock_guard lock(mu_);
  interval_ms_ = std::max<uint32_t>(100, s.config.health_check.interval_ms);
  timeout_ms_ = std::max<uint32_t>(100, s.config.health_check.timeout_ms);
  backoff_ms_ = std::max<uint32_t>(100, s.config.upstream.backoff_ms);
  target_ = s.config.health_check.target;
  std::map<std::string, Probe> next;
  for (const auto& [id, u] : s.upstreams) {
    Probe p;
    if (auto it = probes_.find(id); it != probes_.end()) p = it->second;
    p.upstream = u;
    next.emplace(id, std::move(p));
  }
  probes_.swap(next);
  cv_.notify_all();
}

void HealthChecker::run() {
  std::unique_lock lock(mu_);
  bool probed = false;
  while (!stop_) {
    if (!probed) cv_.wait_for(lock, std::chrono::milliseconds(100));
    probed = false;
    if (stop_) return;
    uint64_t now = monotonic_ms();
    for (auto& [id, p] : probes_) {
      const Upstream& u = *p.upstream;
      if (!u.config.enabled) continue;
      bool up = u.health->is_up();
      if (!up && p.backoff_ms == 0) {
        // Freshly marked down by a worker: first re-probe backoff_ms after the failure.
        p.backoff_ms = backoff_ms_;
        p.next_ms = u.health->marked_down_ms.load() + p.backoff_ms;
      }
      if (now < p.next_ms) continue;
      std::string probed_id = id;  // `id` lives in the map, which update() may replace
      std::shared_ptr<const Upstream> keep = p.upstream;
      std::string target = target_;
      uint32_t timeout = timeout_ms_, interval = interval_ms_, backoff = backoff_ms_;
      probed = true;
      lock.unlock();  // a probe blocks for up to timeout_ms
      std::string err = probe_upstream(*keep, target, timeout);
      lock.lock();
      if (stop_) return;
      now = monotonic_ms();
      auto it = probes_.find(probed_id);
      if (it == probes_.end() || it->second.upstream != keep) break;  // changed meanwhile
      Probe& q = it->second;
      if (err.empty()) {
        if (!keep->health->is_up())
          UP_INFO("upstream %s is up again (health check passed)", probed_id.c_str());
        keep->health->up.store(true, std::memory_order_release);
        q.backoff_ms = 0;
        q.next_ms = now + interval;
      } else {
        if (keep->health->is_up()) {
          keep->health->mark_down(now);
          UP_WARN("upstream %s marked down: health check: %s", probed_id.c_str(), err.c_str());
          q.backoff_ms = backoff;
        } else {
          q.backoff_ms = std::min(q.backoff_ms * 2, std::max(interval, backoff));
        }
        q.next_ms = now + q.backoff_ms;
      }
      break;  // the map may have changed while unlocked: start the scan again
    }
  }
}

}  // namespace up
