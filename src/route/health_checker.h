#pragma once
// Health checks, on their own thread (management side): every enabled upstream is probed each
// health_check.interval_ms; one marked down (by a probe or by a worker whose attempt failed) is
// re-probed with exponential backoff from upstream.backoff_ms (1 s, 2 s, 4 s ... by default) up
// to the interval, and comes back when
// a probe passes. Workers only ever read the `up` flag.
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "route/snapshot.h"

namespace up {

class HealthChecker {
 public:
  HealthChecker();
  ~HealthChecker();

  // The upstreams and probe settings of the snapshot just published.
  void update(const Snapshot& s);

 private:
  struct Probe {
    std::shared_ptr<const Upstream> upstream;
    uint64_t next_ms = 0;
    uint32_t backoff_ms = 0;  // 0 while up
  };
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, Probe> probes_;  // by upstream id
  uint32_t interval_ms_ = 10000;
  uint32_t timeout_ms_ = 3000;
  uint32_t backoff_ms_ = 1000;  // the first re-probe after a failure
  std::string target_;
  std::thread thread_;
};

}  // namespace up
