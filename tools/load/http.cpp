// http: HTTP/1.1 keep-alive requests, the way wrk drives a server: --concurrency connections
// spread over --threads epoll loops, one request in flight on each. Through a forward proxy
// (--proxy http://user:pass@IP:PORT) each request is an absolute-URI GET with
// Proxy-Authorization; --direct sends the origin-form GET straight to the target. The target
// (sink_server, mode 'G') answers every request with a fixed 200 and a --msg byte body.
// Reports requests/s, latency percentiles and the proxy's CPU per request.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "proxy_client.h"
#include "scenarios.h"

namespace uload {
namespace {

struct Conn {
  int fd = -1;
  bool connecting = true;
  size_t sent = 0;
  std::string in;
  uint64_t t_start = 0;
};

double pct(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = size_t(p / 100.0 * double(v.size() - 1) + 0.5);
  return double(v[std::min(i, v.size() - 1)]) / 1000.0;  // ns -> us
}

// The length of one whole response at the front of `in` (head + Content-Length body), 0 if
// incomplete, -1 if it cannot be framed. `close` says the server ends the connection after it.
long response_len(const std::string& in, bool& close) {
  size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  if (in.compare(0, 5, "HTTP/") != 0) return -1;
  long body = -1;
  for (size_t p = in.find("\r\n"); p != std::string::npos && p < end;
       p = in.find("\r\n", p + 2)) {
    const char* line = in.data() + p + 2;
    if (strncasecmp(line, "content-length:", 15) == 0) body = strtol(line + 15, nullptr, 10);
    if (strncasecmp(line, "connection:", 11) == 0) {
      const char* v = line + 11;
      while (*v == ' ') v++;
      close = strncasecmp(v, "close", 5) == 0;
    }
  }
  if (in.compare(0, 8, "HTTP/1.0") == 0 && !close) close = true;  // no keep-alive asked for
  if (body < 0) return -1;
  long total = long(end + 4) + body;
  return long(in.size()) >= total ? total : 0;
}

struct Loop {
  const Options& o;
  std::string req;
  int ep = -1;
  std::vector<Conn> conns;
  std::vector<uint32_t> samples;
  uint64_t done = 0;
  uint64_t reconnects = 0;  // responses after which the server closed (no keep-alive)
  Errors errs;
  double measure_from = 0, measure_to = 0;

  Loop(const Options& opt, int n, std::string r) : o(opt), req(std::move(r)), conns(size_t(n)) {
    samples.reserve(1 << 18);
  }

  const sockaddr_storage& dst() const {
    return o.proxy.kind == ProxyKind::direct ? o.target : o.proxy.addr;
  }
  socklen_t dst_len() const {
    return o.proxy.kind == ProxyKind::direct ? o.target_len : o.proxy.addr_len;
  }

  void open(Conn& c) {
    int err = 0;
    c.fd = start_connect(dst(), dst_len(), err);
    if (c.fd < 0) {
      errs.count_errno(err);
      return;
    }
    c.connecting = true;
    c.sent = 0;
    c.in.clear();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void drop(Conn& c, int e) {
    errs.count_errno(e);
    close(c.fd);
    c.fd = -1;
  }

  void send_request(Conn& c) {
    while (c.sent < req.size()) {
      ssize_t n = send(c.fd, req.data() + c.sent, req.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno != EAGAIN) drop(c, errno);
        return;
      }
      c.sent += size_t(n);
    }
  }

  void on_event(Conn& c, uint32_t ev) {
    if (c.connecting) {
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
      if (soerr) return drop(c, soerr);
      if (!(ev & (EPOLLOUT | EPOLLIN))) return;
      c.connecting = false;
      c.t_start = now_ns();
      send_request(c);
      return;
    }
    if (ev & EPOLLOUT) send_request(c);
    if (c.fd < 0 || !(ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) return;
    char buf[16384];
    for (;;) {
      ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN) break;
        return drop(c, errno);
      }
      if (n == 0) return drop(c, ECONNRESET);  // keep-alive broken: counted, reopened
      c.in.append(buf, size_t(n));
    }
    for (;;) {
      bool server_closes = false;
      long len = response_len(c.in, server_closes);
      if (len < 0) {
        errs.proxy_reply++;
        close(c.fd);
        c.fd = -1;
        return;
      }
      if (len == 0) return;
      bool ok = c.in.compare(9, 3, "200") == 0;
      c.in.erase(0, size_t(len));
      uint64_t now = now_ns();
      double t = double(now) / 1e9;
      if (!ok) {
        errs.proxy_reply++;
      } else if (t >= measure_from && t < measure_to) {
        done++;
        samples.push_back(uint32_t(std::min<uint64_t>(now - c.t_start, UINT32_MAX)));
      }
      c.t_start = now;
      c.sent = 0;
      if (server_closes) {  // a server without keep-alive (tinyproxy): a new connection
        reconnects++;
        close(c.fd);
        open(c);
        return;
      }
      send_request(c);
      if (c.fd < 0) return;
    }
  }

  void run(double warm_until, double end) {
    ep = epoll_create1(EPOLL_CLOEXEC);
    measure_from = warm_until;
    measure_to = end;
    for (auto& c : conns) open(c);
    epoll_event evs[256];
    double next_check = 0;
    for (;;) {
      double now = now_s();
      if (now >= end) break;
      if (now >= next_check) {  // reopen what broke, at most every 10 ms
        next_check = now + 0.01;
        for (auto& c : conns)
          if (c.fd < 0) open(c);
      }
      int n = epoll_wait(ep, evs, 256, 10);
      for (int i = 0; i < n; i++) {
        Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
        if (c.fd >= 0) on_event(c, evs[i].events);
      }
    }
    for (auto& c : conns)
      if (c.fd >= 0) close(c.fd);
    close(ep);
  }
};

}  // namespace

Result run_http(const Options& o, const ProcWatch& pw) {
  std::string host = o.target_text;
  std::string req;
  if (o.proxy.kind == ProxyKind::http) {
    req = "GET http://" + host + "/ HTTP/1.1\r\nHost: " + host + "\r\n";
    if (!o.proxy.user.empty())
      req += "Proxy-Authorization: Basic " + base64(o.proxy.user + ":" + o.proxy.pass) + "\r\n";
    req += "\r\n";
  } else {
    req = "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  }
  int threads = std::max(1, std::min(o.threads, o.concurrency));
  std::vector<std::unique_ptr<Loop>> loops;
  for (int i = 0; i < threads; i++) {
    int n = o.concurrency / threads + (i < o.concurrency % threads ? 1 : 0);
    loops.push_back(std::make_unique<Loop>(o, n, req));
  }
  // Half a second to open the connections and warm up, outside the window.
  double t0 = now_s() + 0.5, t1 = t0 + o.duration;
  std::vector<std::thread> ts;
  for (auto& l : loops) ts.emplace_back([&l, t0, t1] { l->run(t0, t1); });
  while (now_s() < t0) usleep(1000);
  ProcSample before = pw.sample(false);
  while (now_s() < t1) usleep(1000);
  ProcSample after = pw.sample(false);
  for (auto& t : ts) t.join();
  double secs = o.duration;
  std::vector<uint32_t> samples;
  uint64_t reqs = 0, reconnects = 0;
  Errors errs;
  for (auto& l : loops) {
    samples.insert(samples.end(), l->samples.begin(), l->samples.end());
    reqs += l->done;
    reconnects += l->reconnects;
    errs.add(l->errs);
  }
  std::sort(samples.begin(), samples.end());
  Result r;
  result_head(r, o, "http");
  r.integer("connections", o.concurrency);
  r.num("seconds", secs);
  r.integer("requests", (long long)reqs);
  double rps = double(reqs) / secs;
  r.num("req_s", rps, 1);
  r.integer("reconnects", (long long)reconnects);
  double p50 = pct(samples, 50), p90 = pct(samples, 90), p99 = pct(samples, 99);
  r.num("p50_us", p50, 1);
  r.num("p90_us", p90, 1);
  r.num("p99_us", p99, 1);
  char cpu[128] = "";
  if (!pw.empty()) {
    double c = after.cpu_s - before.cpu_s;
    r.num("proxy_cpu_s", c, 3);
    double per = reqs ? c * 1e6 / double(reqs) : 0;
    r.num("proxy_cpu_us_per_req", per, 2);
    snprintf(cpu, sizeof cpu, ", proxy %.2f CPU-us/request (%.0f%% of a core)", per,
             100 * c / secs);
  }
  report_interference(r, before, after, secs);
  errs.report(r);
  char h[640];
  snprintf(h, sizeof h,
           "http c=%d threads=%d via %s: %.0f requests/s, p50 %.1f p90 %.1f p99 %.1f us%s%s%s",
           o.concurrency, threads, o.proxy.text.c_str(), rps, p50, p90, p99, cpu,
           reconnects ? " (the server closed after each response: no keep-alive)" : "",
           errors_text(errs).c_str());
  r.human = h;
  return r;
}

}  // namespace uload
