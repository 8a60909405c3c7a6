// idle: open T tunnels, carry one round trip on each (so every proxy has connected to the
// target and set the tunnel up), hold them, and report the proxy's memory growth per tunnel.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "proxy_client.h"
#include "scenarios.h"

namespace uload {

Result run_idle(const Options& o, const ProcWatch& pw) {
  Errors errs;
  ProcSample before = pw.sample(true);
  std::vector<int> fds;
  fds.reserve(size_t(o.tunnels));
  std::string msg(size_t(o.msg), 'p');
  msg[0] = 'P';
  char buf[4096];
  double t0 = now_s();
  // Opening is bounded by --duration; failures stop it after a streak (the proxy's limit).
  int streak = 0;
  for (int i = 0; i < o.tunnels && now_s() - t0 < o.duration && streak < 50; i++) {
    int fd = open_tunnel_blocking(o, errs);
    if (fd < 0) { streak++; continue; }
    bool ok = send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) == ssize_t(msg.size());
    size_t got = 0;
    while (ok && got < msg.size()) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) { errs.count_errno(n ? errno : ECONNRESET); ok = false; break; }
      got += size_t(n);
    }
    if (!ok) { close(fd); streak++; continue; }
    streak = 0;
    fds.push_back(fd);
  }
  double open_secs = now_s() - t0;
  std::this_thread::sleep_for(std::chrono::duration<double>(o.settle));
  ProcSample after = pw.sample(true);
  for (int fd : fds) close(fd);
  size_t n = fds.size();
  Result r;
  result_head(r, o, "idle");
  r.integer("tunnels", o.tunnels);
  r.integer("tunnels_ok", (long long)n);
  r.num("open_seconds", open_secs);
  char mem[256] = "";
  if (!pw.empty()) {
    double rss = after.rss_kib - before.rss_kib, pss = after.pss_kib - before.pss_kib;
    r.num("proxy_rss_before_kib", before.rss_kib, 0);
    r.num("proxy_rss_after_kib", after.rss_kib, 0);
    r.num("proxy_pss_before_kib", before.pss_kib, 0);
    r.num("proxy_pss_after_kib", after.pss_kib, 0);
    r.integer("proxy_processes", after.processes);
    double per_rss = n ? rss / double(n) : 0, per_pss = n ? pss / double(n) : 0;
    r.num("proxy_rss_kib_per_tunnel", per_rss, 2);
    r.num("proxy_pss_kib_per_tunnel", per_pss, 2);
    snprintf(mem, sizeof mem,
             ", proxy RSS %.0f -> %.0f KiB: %.2f KiB/tunnel (PSS %.2f KiB/tunnel, %d processes)",
             before.rss_kib, after.rss_kib, per_rss, per_pss, after.processes);
  }
  errs.report(r);
  char h[640];
  snprintf(h, sizeof h, "idle tunnels=%d via %s: %zu open (in %.1f s)%s%s", o.tunnels,
           o.proxy.text.c_str(), n, open_secs, mem, errors_text(errs).c_str());
  r.human = h;
  return r;
}

}  // namespace uload
