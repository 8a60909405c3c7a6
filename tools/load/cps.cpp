// cps: connections per second. Each connection: connect to the proxy, full handshake (with auth
// when the URL has credentials), send one message ('E' + filler), read the echo, read the
// target's close (the target closes first), close. `concurrency` connections in flight,
// spread over `threads` epoll loops, for `duration` seconds. With --tls a TLS handshake comes
// first (a full one each time, or resumed with --tls-resume).
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include "proxy_client.h"
#include "scenarios.h"

namespace uload {
namespace {

enum class St { connecting, tls, handshake, payload, echo };

struct Slot {
  Tunnel t;  // t.fd < 0: no connection
  St st = St::connecting;
  Handshake hs;
  size_t sent = 0, got = 0;
  double started = 0;
};

struct Loop {
  const Options& o;
  TlsClient& tls;
  int ep = -1;
  std::vector<Slot> slots;
  std::string msg;
  uint64_t ok = 0;
  uint64_t started = 0;
  Errors errs;
  uint64_t lat_sum_ns = 0;

  Loop(const Options& opt, TlsClient& t, int n) : o(opt), tls(t), slots(size_t(n)) {
    msg.assign(size_t(o.msg), 'e');
    msg[0] = 'E';
  }

  const sockaddr_storage& dst() const {
    return o.proxy.kind == ProxyKind::direct ? o.target : o.proxy.addr;
  }
  socklen_t dst_len() const {
    return o.proxy.kind == ProxyKind::direct ? o.target_len : o.proxy.addr_len;
  }

  void begin(Slot& s) {
    int err = 0;
    s.t.fd = start_connect(dst(), dst_len(), err);
    started++;
    s.started = now_s();
    if (s.t.fd < 0) {
      errs.count_errno(err);
      return;  // retried on the next timer pass
    }
    s.st = St::connecting;
    s.sent = s.got = 0;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &s;
    epoll_ctl(ep, EPOLL_CTL_ADD, s.t.fd, &ev);
  }

  void fail(Slot& s, int e) {
    errs.count_errno(e);
    s.t.close();
  }

  void finish(Slot& s) {
    ok++;
    s.t.close();
  }

  void start_handshake(Slot& s) {
    if (o.proxy.kind == ProxyKind::vless) s.t.vless.expect();
    s.hs.start(o.proxy, o.target);
    s.st = s.hs.state() == Handshake::State::done ? St::payload : St::handshake;
  }

  // Does everything possible for this connection until it has to wait.
  void drive(Slot& s, uint32_t events) {
    char buf[4096];
    for (;;) {
      switch (s.st) {
        case St::connecting: {
          if (events & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t sl = sizeof err;
            getsockopt(s.t.fd, SOL_SOCKET, SO_ERROR, &err, &sl);
            fail(s, err ? err : ECONNRESET);
            return;
          }
          if (!(events & EPOLLOUT)) return;
          if (tls.enabled()) {
            s.t.ssl = tls.make(s.t.fd);
            if (!s.t.ssl) { fail(s, EPROTO); return; }
            s.st = St::tls;
            continue;
          }
          start_handshake(s);
          continue;
        }
        case St::tls: {
          ssize_t r = tls_result(s.t.ssl, SSL_connect(s.t.ssl));
          if (r < 0 && errno == EAGAIN) return;  // SSL_connect waits for the socket
          if (r <= 0) { fail(s, r < 0 ? errno : ECONNRESET); return; }
          tls.handshaken(s.t.ssl);
          start_handshake(s);
          continue;
        }
        case St::handshake: {
          auto hst = s.hs.state();
          if (hst == Handshake::State::send) {
            ssize_t n = s.t.send(s.hs.pending(), s.hs.pending_len());
            if (n < 0) {
              if (errno == EAGAIN) return;
              fail(s, errno);
              return;
            }
            s.hs.sent(size_t(n));
            if (s.hs.state() == Handshake::State::recv) return;  // the reply raises an event
            continue;
          }
          if (hst == Handshake::State::recv) {
            ssize_t n = s.t.recv(buf, sizeof buf);
            if (n < 0) {
              if (errno == EAGAIN) return;
              fail(s, errno);
              return;
            }
            if (n == 0) { fail(s, ECONNRESET); return; }
            s.hs.feed(reinterpret_cast<uint8_t*>(buf), size_t(n));
            continue;
          }
          if (hst == Handshake::State::failed) {
            errs.proxy_reply++;
            s.t.close();
            return;
          }
          s.st = St::payload;
          continue;
        }
        case St::payload: {
          ssize_t n = s.t.send(msg.data() + s.sent, msg.size() - s.sent);
          if (n < 0) {
            if (errno == EAGAIN) return;
            fail(s, errno);
            return;
          }
          s.sent += size_t(n);
          if (s.sent < msg.size()) continue;
          s.st = St::echo;
          return;  // wait for the echo
        }
        case St::echo: {
          ssize_t n = s.t.recv(buf, sizeof buf);
          if (n < 0) {
            if (errno == EAGAIN) return;
            fail(s, errno);
            return;
          }
          if (n == 0) {
            if (s.got >= msg.size()) finish(s);
            else { errs.other++; s.t.close(); }  // short echo
            return;
          }
          s.got += size_t(n);
          continue;
        }
      }
    }
  }

  void run(double deadline) {
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (auto& s : slots) begin(s);
    epoll_event evs[256];
    double next_scan = now_s() + 0.1;
    for (;;) {
      double t = now_s();
      if (t >= deadline) break;
      int n = epoll_wait(ep, evs, 256, 50);
      for (int i = 0; i < n; i++) {
        Slot& s = *static_cast<Slot*>(evs[i].data.ptr);
        if (s.t.fd < 0) continue;
        drive(s, evs[i].events);
        if (s.t.fd < 0 && now_s() < deadline) begin(s);
      }
      t = now_s();
      if (t >= next_scan) {
        next_scan = t + 0.1;
        for (auto& s : slots) {
          if (s.t.fd >= 0 && t - s.started > o.timeout) {
            errs.timeout++;
            s.t.close();
          }
          if (s.t.fd < 0 && t < deadline) begin(s);
        }
      }
    }
    for (auto& s : slots)
      if (s.t.fd >= 0) s.t.close();
    close(ep);
  }
};

// --tls-resume: full handshakes before the clock starts, echo and all (the servers' session
// tickets come after the handshake and are read with the echo), until there is a session for
// every connection in flight, so the measured ones resume from the start.
void warm_sessions(const Options& o, TlsClient& tls) {
  std::string msg(size_t(o.msg), 'e');
  msg[0] = 'E';
  for (int i = 0; i < o.concurrency && tls.sessions() < size_t(o.concurrency); i++) {
    Errors ignored;
    Tunnel t = open_tunnel_blocking(o, tls, ignored, false);
    if (t.fd < 0) break;
    if (t.send(msg.data(), msg.size()) == ssize_t(msg.size())) {
      char buf[4096];
      while (t.recv(buf, sizeof buf) > 0) {}
    }
    t.close();
  }
  tls.reset_counts();
}

}  // namespace

Result run_cps(const Options& o, const ProcWatch& pw) {
  int nt = o.threads < 1 ? 1 : o.threads;
  TlsClient tls;
  std::string terr;
  if (!tls.init(o, terr)) die_tls(terr);
  if (o.tls_resume) warm_sessions(o, tls);
  std::vector<std::unique_ptr<Loop>> loops;
  for (int i = 0; i < nt; i++) {
    int n = o.concurrency / nt + (i < o.concurrency % nt ? 1 : 0);
    loops.push_back(std::make_unique<Loop>(o, tls, n < 1 ? 1 : n));
  }
  ProcSample before = pw.sample(false);
  double t0 = now_s();
  double deadline = t0 + o.duration;
  std::vector<std::thread> th;
  for (auto& l : loops) th.emplace_back([&l, deadline] { l->run(deadline); });
  for (auto& t : th) t.join();
  double secs = now_s() - t0;
  ProcSample after = pw.sample(false);
  uint64_t ok = 0;
  Errors errs;
  for (auto& l : loops) {
    ok += l->ok;
    errs.add(l->errs);
  }
  Result r;
  result_head(r, o, "cps");
  r.integer("concurrency", o.concurrency);
  r.integer("threads", nt);
  r.num("seconds", secs);
  r.integer("connections", (long long)ok);
  double cps = secs > 0 ? double(ok) / secs : 0;
  r.num("conn_s", cps, 1);
  char cpu[128] = "";
  if (!pw.empty()) {
    double c = after.cpu_s - before.cpu_s;
    r.num("proxy_cpu_s", c, 3);
    double per = ok ? c * 1e6 / double(ok) : 0;
    r.num("proxy_cpu_us_per_conn", per, 2);
    snprintf(cpu, sizeof cpu, ", proxy %.1f CPU-us/conn (%.0f%% of a core)", per,
             secs > 0 ? 100 * c / secs : 0);
  }
  report_interference(r, before, after, secs);
  errs.report(r);
  tls.report(r);
  char h[512];
  snprintf(h, sizeof h, "cps concurrency=%d via %s: %.0f conn/s, %llu in %.2f s%s%s%s",
           o.concurrency, o.proxy.text.c_str(), cps, (unsigned long long)ok, secs, cpu,
           tls.summary().c_str(), errors_text(errs).c_str());
  r.human = h;
  return r;
}

}  // namespace uload
