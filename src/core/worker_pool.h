#pragma once
// Starting and stopping the workers, shared by the proxy (control/daemon.cpp) and the agent
// (agent/agent_main.cpp): one pinned thread per allowed CPU, each with its own ring.
#include <cstdint>
#include <string>
#include <vector>

namespace up {

struct Runtime;

// The CPUs this process may run on ({-1}, no pinning, if that cannot be read).
std::vector<int> allowed_cpus();

// Creates n workers in rt.workers, pinned round-robin to `cpus`, and waits until each has its
// ring and listeners up. Returns what failed, one "worker N: ..." line each (empty: all run).
std::vector<std::string> start_workers(Runtime& rt, unsigned n, const std::vector<int>& cpus);

// Tells every worker to stop (open tunnels get grace_ms) and joins them. With
// wait_listeners_shut (every worker started), logs once all listeners are shut, the point from
// which a new client is refused.
void stop_workers(Runtime& rt, uint32_t grace_ms, bool wait_listeners_shut);

}  // namespace up
