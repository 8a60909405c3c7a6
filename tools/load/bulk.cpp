// bulk: N streams through the proxy to the target, upload ('U': target discards) or download
// ('D': target sends), for a duration or a byte budget. Blocking sockets, one thread a stream,
// large buffers.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "proxy_client.h"
#include "scenarios.h"

namespace uload {

void result_head(Result& r, const Options& o, const char* scenario) {
  r.str("scenario", scenario);
  if (!o.label.empty()) r.str("label", o.label);
  r.str("proxy", o.proxy.text);
}

[[noreturn]] void die_tls(const std::string& err) {
  fprintf(stderr, "uringload: --tls: %s\n", err.c_str());
  exit(2);
}

std::string errors_text(const Errors& e) {
  if (!e.total()) return "";
  std::string s = ", ERRORS " + std::to_string(e.total()) + " (";
  auto add = [&](const char* n, uint64_t v) {
    if (!v) return;
    if (s.back() != '(') s += ' ';
    s += n + std::string("=") + std::to_string(v);
  };
  add("refused", e.refused); add("reset", e.reset); add("timeout", e.timeout);
  add("proxy_reply", e.proxy_reply); add("other", e.other); add("tls", e.tls);
  return s + ")";
}

Result run_bulk(const Options& o, const ProcWatch& pw) {
  Errors errs;
  TlsClient tls;
  std::string terr;
  if (!tls.init(o, terr)) die_tls(terr);
  std::vector<Tunnel> tuns;
  for (int i = 0; i < o.streams; i++) {
    Tunnel t = open_tunnel_blocking(o, tls, errs);
    if (t.fd >= 0) tuns.push_back(t);
  }
  // Tell the target the direction before the clock starts.
  for (Tunnel& t : tuns) {
    if (!o.download) continue;
    if (t.send("D", 1) != 1) { errs.count_errno(errno); t.close(); }
  }
  std::atomic<uint64_t> total{0};
  std::mutex mu;
  const uint64_t per_stream = o.bytes ? (o.bytes + o.streams - 1) / o.streams : 0;
  ProcSample before = pw.sample(false);
  const double t0 = now_s();
  const double deadline = t0 + o.duration;
  std::atomic<double> t_end_max{t0};
  std::vector<std::thread> th;
  for (Tunnel& tun : tuns) {
    if (tun.fd < 0) continue;
    th.emplace_back([&, t = &tun] {
      std::unique_ptr<char[]> buf(new char[o.buf]);
      memset(buf.get(), 'U', o.buf);
      uint64_t done = 0;
      Errors le;
      int iter = 0;
      while (true) {
        if ((++iter & 7) == 0 && now_s() >= deadline) break;
        if (per_stream && done >= per_stream) break;
        size_t want = o.buf;
        if (per_stream && per_stream - done < want) want = size_t(per_stream - done);
        ssize_t n = o.download ? t->recv(buf.get(), want) : t->send(buf.get(), want);
        if (n < 0) {
          if (errno == EINTR) continue;
          le.count_errno(errno);
          break;
        }
        if (n == 0) { le.reset++; break; }
        done += uint64_t(n);
      }
      double te = now_s();
      double cur = t_end_max.load();
      while (te > cur && !t_end_max.compare_exchange_weak(cur, te)) {}
      total += done;
      if (!o.download && !le.total()) {
        // Wait until the target has seen everything: it closes after our EOF. (Under TLS the
        // bytes back are read raw: only the close matters.)
        t->shutdown_write();
        pollfd p{t->fd, POLLIN, 0};
        double until = now_s() + o.timeout;
        while (now_s() < until) {
          if (poll(&p, 1, int(o.timeout * 1000)) <= 0) { le.timeout++; break; }
          ssize_t r = recv(t->fd, buf.get(), o.buf, 0);
          if (r <= 0) break;
        }
      }
      t->close();
      std::lock_guard lk(mu);
      errs.add(le);
    });
  }
  for (auto& t : th) t.join();
  ProcSample after = pw.sample(false);
  double secs = t_end_max.load() - t0;
  uint64_t bytes = total.load();
  Result r;
  result_head(r, o, "bulk");
  r.str("direction", o.download ? "download" : "upload");
  r.integer("streams", o.streams);
  r.integer("streams_ok", (long long)th.size());
  r.num("seconds", secs);
  r.integer("bytes", (long long)bytes);
  double gbps = secs > 0 ? double(bytes) * 8 / secs / 1e9 : 0;
  r.num("gbit_s", gbps);
  char cpu[128] = "";
  if (!pw.empty()) {
    double c = after.cpu_s - before.cpu_s;
    r.num("proxy_cpu_s", c, 3);
    double per_gb = bytes ? c / (double(bytes) / 1e9) : 0;
    r.num("proxy_cpu_s_per_gb", per_gb, 4);
    snprintf(cpu, sizeof cpu, ", proxy %.3f CPU-s/GB (%.2f CPU-s, %.0f%% of a core)", per_gb, c,
             secs > 0 ? 100 * c / secs : 0);
  }
  report_interference(r, before, after, secs);
  errs.report(r);
  tls.report(r);
  char h[512];
  snprintf(h, sizeof h, "bulk %s streams=%d via %s: %.2f Gbit/s, %.2f GB in %.2f s%s%s%s",
           o.download ? "download" : "upload", o.streams, o.proxy.text.c_str(), gbps,
           double(bytes) / 1e9, secs, cpu, tls.summary().c_str(), errors_text(errs).c_str());
  r.human = h;
  return r;
}

}  // namespace uload
