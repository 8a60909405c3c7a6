#include "proc_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "common.h"

namespace uload {
namespace {

struct Stat {
  bool ok = false;
  int ppid = 0;
  unsigned long long utime = 0, stime = 0, cutime = 0, cstime = 0;
};

Stat read_stat(int pid) {
  Stat s;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = fopen(path, "re");
  if (!f) return s;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  // comm may hold spaces and parentheses: fields resume after the last ')'.
  char* p = strrchr(buf, ')');
  if (!p) return s;
  p += 2;  // state
  // fields from 3 (state): state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime stime cutime cstime
  char state;
  long long ppid, pgrp, session, tty, tpgid;
  unsigned long flags, minflt, cminflt, majflt, cmajflt;
  if (sscanf(p, "%c %lld %lld %lld %lld %lld %lu %lu %lu %lu %lu %llu %llu %llu %llu", &state,
             &ppid, &pgrp, &session, &tty, &tpgid, &flags, &minflt, &cminflt, &majflt, &cmajflt,
             &s.utime, &s.stime, &s.cutime, &s.cstime) == 15) {
    s.ok = true;
    s.ppid = int(ppid);
  }
  return s;
}

double status_kib(int pid, const char* file, const char* key) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  FILE* f = fopen(path, "re");
  if (!f) return 0;
  char line[256];
  size_t klen = strlen(key);
  double v = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) == 0) {
      v = atof(line + klen);
      break;
    }
  }
  fclose(f);
  return v;
}

std::set<int> children_of(int parent) {
  // Whole subtree: dante forks helpers of helpers.
  std::set<int> out;
  std::vector<std::pair<int, int>> all;  // pid, ppid
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    int pid = atoi(e->d_name);
    if (pid <= 0) continue;
    Stat s = read_stat(pid);
    if (s.ok) all.emplace_back(pid, s.ppid);
  }
  closedir(d);
  bool grew = true;
  std::set<int> tree{parent};
  while (grew) {
    grew = false;
    for (auto [pid, pp] : all)
      if (tree.count(pp) && !tree.count(pid)) {
        tree.insert(pid);
        grew = true;
      }
  }
  tree.erase(parent);
  return tree;
}

double machine_busy() {
  FILE* f = fopen("/proc/stat", "re");
  if (!f) return 0;
  unsigned long long v[10] = {};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                 &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
  fclose(f);
  if (n < 5) return 0;
  // user nice system idle iowait irq softirq steal (guest is already inside user)
  unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  return double(busy) / double(sysconf(_SC_CLK_TCK));
}

}  // namespace

void report_interference(Result& r, const ProcSample& b, const ProcSample& a, double secs) {
  if (secs <= 0) return;
  double other = (a.machine_busy_s - b.machine_busy_s) - (a.self_cpu_s - b.self_cpu_s) -
                 (a.cpu_s - b.cpu_s);
  r.num("self_cpu_s", a.self_cpu_s - b.self_cpu_s, 3);
  r.num("other_cpu_cores", other < 0 ? 0 : other / secs, 2);
}

ProcSample ProcWatch::sample(bool memory) const {
  static const double hz = double(sysconf(_SC_CLK_TCK));
  ProcSample out;
  out.machine_busy_s = machine_busy();
  {
    Stat me = read_stat(getpid());
    out.self_cpu_s = double(me.utime + me.stime) / hz;
  }
  std::set<int> seen;
  auto add = [&](int pid, bool with_children_time) {
    if (!seen.insert(pid).second) return;
    Stat s = read_stat(pid);
    if (!s.ok) return;
    unsigned long long t = s.utime + s.stime;
    if (with_children_time) t += s.cutime + s.cstime;
    out.cpu_s += double(t) / hz;
    out.processes++;
    if (memory) {
      out.rss_kib += status_kib(pid, "status", "VmRSS:");
      out.pss_kib += status_kib(pid, "smaps_rollup", "Pss:");
    }
  };
  for (int pid : pids_) add(pid, false);
  for (int parent : parents_) {
    add(parent, true);
    for (int c : children_of(parent)) add(c, false);
  }
  return out;
}

}  // namespace uload
