// latency: K tunnels doing ping-pong round trips of `msg` bytes ('P' + filler; the target
// echoes). One tunnel: blocking, percentiles of the round trip. Several: one epoll loop keeps
// one message in flight on each; reports round trips per second (and percentiles too).
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proxy_client.h"
#include "scenarios.h"

namespace uload {
namespace {

constexpr size_t kMaxSamples = 20'000'000;

struct Tun {
  int fd;
  size_t sent = 0, got = 0;
  uint64_t t_start = 0;
};

double pct(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = size_t(p / 100.0 * double(v.size() - 1) + 0.5);
  return double(v[std::min(i, v.size() - 1)]) / 1000.0;  // ns -> us
}

}  // namespace

Result run_latency(const Options& o, const ProcWatch& pw) {
  Errors errs;
  std::vector<Tun> tuns;
  for (int i = 0; i < o.tunnels; i++) {
    int fd = open_tunnel_blocking(o, errs);
    if (fd >= 0) tuns.push_back({fd});
  }
  std::string msg(size_t(o.msg), 'p');
  msg[0] = 'P';
  std::vector<uint32_t> samples;
  samples.reserve(1 << 20);
  char buf[65536];
  // Warm-up: one round trip per tunnel outside the window (the target learns the mode).
  for (auto& t : tuns) {
    if (send(t.fd, msg.data(), msg.size(), MSG_NOSIGNAL) != ssize_t(msg.size())) {
      errs.count_errno(errno); close(t.fd); t.fd = -1; continue;
    }
    size_t got = 0;
    while (got < msg.size()) {
      ssize_t n = recv(t.fd, buf, sizeof buf, 0);
      if (n <= 0) { errs.count_errno(n ? errno : ECONNRESET); close(t.fd); t.fd = -1; break; }
      got += size_t(n);
    }
  }
  tuns.erase(std::remove_if(tuns.begin(), tuns.end(), [](const Tun& t) { return t.fd < 0; }),
             tuns.end());
  ProcSample before = pw.sample(false);
  double t0 = now_s();
  double deadline = t0 + o.duration;
  if (tuns.size() == 1) {
    int fd = tuns[0].fd;
    bool ok = true;
    while (ok && samples.size() < kMaxSamples) {
      if ((samples.size() & 63) == 0 && now_s() >= deadline) break;
      uint64_t a = now_ns();
      if (send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != ssize_t(msg.size())) {
        errs.count_errno(errno); ok = false; break;
      }
      size_t got = 0;
      while (got < msg.size()) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) { errs.count_errno(n ? errno : ECONNRESET); ok = false; break; }
        got += size_t(n);
      }
      if (!ok) break;
      samples.push_back(uint32_t(std::min<uint64_t>(now_ns() - a, UINT32_MAX)));
      if (o.interval_us > 0) {
        // An idle tunnel: let the proxy's threads go back to sleep before the next message.
        timespec ts{0, long(o.interval_us) * 1000};
        nanosleep(&ts, nullptr);
      }
    }
  } else if (!tuns.empty()) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    size_t live = 0;
    for (auto& t : tuns) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = &t;
      epoll_ctl(ep, EPOLL_CTL_ADD, t.fd, &ev);
      t.t_start = now_ns();
      if (send(t.fd, msg.data(), msg.size(), MSG_NOSIGNAL) != ssize_t(msg.size())) {
        errs.count_errno(errno);
        epoll_ctl(ep, EPOLL_CTL_DEL, t.fd, nullptr);
      } else {
        live++;
      }
    }
    epoll_event evs[64];
    while (live && samples.size() < kMaxSamples && now_s() < deadline) {
      int n = epoll_wait(ep, evs, 64, 100);
      for (int i = 0; i < n; i++) {
        Tun& t = *static_cast<Tun*>(evs[i].data.ptr);
        // Level-triggered: one recv per wakeup; blocking socket, but data is there.
        ssize_t r = recv(t.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN) continue;
        if (r <= 0) {
          errs.count_errno(r ? errno : ECONNRESET);
          epoll_ctl(ep, EPOLL_CTL_DEL, t.fd, nullptr);
          live--;
          continue;
        }
        t.got += size_t(r);
        if (t.got < msg.size()) continue;
        t.got -= msg.size();
        uint64_t now = now_ns();
        samples.push_back(uint32_t(std::min<uint64_t>(now - t.t_start, UINT32_MAX)));
        t.t_start = now;
        if (send(t.fd, msg.data(), msg.size(), MSG_NOSIGNAL) != ssize_t(msg.size())) {
          errs.count_errno(errno);
          epoll_ctl(ep, EPOLL_CTL_DEL, t.fd, nullptr);
          live--;
        }
      }
    }
    close(ep);
  }
  double secs = now_s() - t0;
  ProcSample after = pw.sample(false);
  for (auto& t : tuns) close(t.fd);
  uint64_t rts = samples.size();
  std::sort(samples.begin(), samples.end());
  Result r;
  result_head(r, o, "latency");
  r.integer("tunnels", o.tunnels);
  r.integer("tunnels_ok", (long long)tuns.size());
  r.num("seconds", secs);
  r.integer("round_trips", (long long)rts);
  if (o.interval_us > 0 && tuns.size() == 1) r.integer("interval_us", o.interval_us);
  double rps = secs > 0 ? double(rts) / secs : 0;
  r.num("rt_s", rps, 1);
  double p50 = pct(samples, 50), p90 = pct(samples, 90), p99 = pct(samples, 99),
         p999 = pct(samples, 99.9);
  r.num("p50_us", p50, 1);
  r.num("p90_us", p90, 1);
  r.num("p99_us", p99, 1);
  r.num("p999_us", p999, 1);
  char cpu[128] = "";
  if (!pw.empty()) {
    double c = after.cpu_s - before.cpu_s;
    r.num("proxy_cpu_s", c, 3);
    double per = rts ? c * 1e6 / double(rts) : 0;
    r.num("proxy_cpu_us_per_rt", per, 2);
    snprintf(cpu, sizeof cpu, ", proxy %.2f CPU-us/round trip (%.0f%% of a core)", per,
             secs > 0 ? 100 * c / secs : 0);
  }
  report_interference(r, before, after, secs);
  errs.report(r);
  char h[640];
  snprintf(h, sizeof h,
           "latency tunnels=%d%s via %s: %.0f round trips/s, p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f "
           "us%s%s",
           o.tunnels, o.interval_us > 0 && tuns.size() == 1 ? " (paced)" : "", o.proxy.text.c_str(), rps, p50, p90, p99, p999, cpu,
           errors_text(errs).c_str());
  r.human = h;
  return r;
}

}  // namespace uload
