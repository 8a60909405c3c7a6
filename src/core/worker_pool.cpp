#include "core/worker_pool.h"

#include <sched.h>

#include <condition_variable>
#include <mutex>

#include "core/clock.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/worker.h"

namespace up {

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &set)) cpus.push_back(i);
  if (cpus.empty()) cpus.push_back(-1);
  return cpus;
}

std::vector<std::string> start_workers(Runtime& rt, unsigned n, const std::vector<int>& cpus) {
  std::mutex mu;
  std::condition_variable cv;
  unsigned reported = 0;
  std::vector<std::string> errors;
  for (unsigned i = 0; i < n; ++i) rt.workers.push_back(std::make_unique<Worker>(i, rt));
  for (unsigned i = 0; i < n; ++i)
    rt.workers[i]->start(cpus[i % cpus.size()], [&](unsigned id, std::string e) {
      std::lock_guard lock(mu);
      if (!e.empty()) errors.push_back("worker " + std::to_string(id) + ": " + e);
      ++reported;
      cv.notify_all();
    });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return reported == n; });
  return errors;
}

void stop_workers(Runtime& rt, uint32_t grace_ms, bool wait_listeners_shut) {
  rt.stop_deadline_ms = monotonic_ms() + grace_ms;
  rt.stopping.store(true, std::memory_order_release);
  for (auto& w : rt.workers) w->mailbox().post([] {});
  if (wait_listeners_shut) {
    auto all = static_cast<unsigned>(rt.workers.size());
    for (unsigned n; (n = rt.workers_shut.load(std::memory_order_acquire)) < all;)
      rt.workers_shut.wait(n);
    UP_INFO("listeners closed; draining %u tunnel(s)", rt.connections.load());
  }
  for (auto& w : rt.workers) w->join();
}

}  // namespace up
