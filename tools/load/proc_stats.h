#pragma once
// The proxy's CPU time and memory, read from /proc: utime+stime from /proc/PID/stat (all
// threads; for a parent also cutime+cstime of reaped children), VmRSS from /proc/PID/status
// and Pss from /proc/PID/smaps_rollup.
#include <vector>

namespace uload {

struct ProcSample {
  double cpu_s = 0;     // user + system seconds, summed over the processes
  double rss_kib = 0;   // VmRSS summed
  double pss_kib = 0;   // Pss summed (shared pages split between forked processes)
  int processes = 0;
  double self_cpu_s = 0;      // this process (client and targets)
  double machine_busy_s = 0;  // every CPU's non-idle time, from /proc/stat
};

struct Result;
// Adds "other_cpu_cores": CPU the rest of the machine used during the window (neither this
// process nor the proxy), in cores. Other work on a shared machine skews every figure.
void report_interference(Result& r, const ProcSample& before, const ProcSample& after,
                         double secs);

class ProcWatch {
 public:
  ProcWatch(std::vector<int> pids, std::vector<int> parents)
      : pids_(std::move(pids)), parents_(std::move(parents)) {}
  bool empty() const { return pids_.empty() && parents_.empty(); }
  // Re-enumerates the children of each parent on every sample (forking servers).
  ProcSample sample(bool memory) const;

 private:
  std::vector<int> pids_, parents_;
};

}  // namespace uload
