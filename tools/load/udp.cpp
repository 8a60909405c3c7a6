// udp: datagrams through SOCKS5 UDP ASSOCIATE (RFC 1928 section 7), or straight to the target
// (--direct). A associations (--tunnels), each a TCP control connection (greeting, RFC 1929
// auth, UDP ASSOCIATE naming the client's own UDP address) plus a UDP socket connected to the
// relay address the reply names. Each association keeps `window` datagrams of `msg` payload
// bytes in flight to a UDP echo target (run here with --target-listen: the same address as
// the TCP targets, UDP), which sends every datagram back; one epoll loop, recvmmsg/sendmmsg.
// A datagram counts when its echo comes back; an association with nothing back for 50 ms
// has its window written off as lost and refilled (UDP may drop under load; counted).
// Reports echoed datagrams per second, datagrams lost, and the proxy's CPU per datagram
// relayed (each direction counts one: CPU-us per datagram = CPU-s per million datagrams) and
// per GB of payload relayed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "scenarios.h"

namespace uload {

namespace {

constexpr int kBatch = 64;
constexpr uint64_t kLostAfterNs = 50'000'000;  // 50 ms without an echo: the window is lost

struct Assoc {
  int ctl = -1;  // the TCP control connection (SOCKS5 only)
  int fd = -1;   // UDP, connected to the relay (or the target)
  uint32_t inflight = 0;
  uint64_t last_ns = 0;  // last echo (or refill)
};

bool send_all(int fd, const uint8_t* p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

bool recv_all(int fd, uint8_t* p, size_t n) {
  while (n) {
    ssize_t r = recv(fd, p, n, 0);
    if (r <= 0) {
      if (r == 0) errno = ECONNRESET;
      return false;
    }
    p += r;
    n -= size_t(r);
  }
  return true;
}

// ATYP + address + port of `a` appended to out.
void put_addr(std::string& out, const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) {
    auto* a4 = reinterpret_cast<const sockaddr_in*>(&a);
    out += char(1);
    out.append(reinterpret_cast<const char*>(&a4->sin_addr), 4);
    out.append(reinterpret_cast<const char*>(&a4->sin_port), 2);
  } else {
    auto* a6 = reinterpret_cast<const sockaddr_in6*>(&a);
    out += char(4);
    out.append(reinterpret_cast<const char*>(&a6->sin6_addr), 16);
    out.append(reinterpret_cast<const char*>(&a6->sin6_port), 2);
  }
}

// The SOCKS5 handshake up to the UDP ASSOCIATE reply on the blocking socket `ctl`; fills the
// relay address. `self` is the client's UDP address (the request names it). False with errno
// (EPROTO for a refusal, counted by the caller as a proxy reply).
bool associate(const Options& o, int ctl, const sockaddr_storage& self, sockaddr_storage& relay,
               socklen_t& relay_len, int& rep) {
  const ProxySpec& p = o.proxy;
  bool auth = !p.user.empty();
  uint8_t greet[3] = {5, 1, uint8_t(auth ? 2 : 0)};
  uint8_t b[262];
  if (!send_all(ctl, greet, 3) || !recv_all(ctl, b, 2)) return false;
  if (b[0] != 5 || b[1] != greet[2]) { rep = 0xff; return false; }
  if (auth) {
    std::string a;
    a += char(1);
    a += char(p.user.size());
    a += p.user;
    a += char(p.pass.size());
    a += p.pass;
    if (!send_all(ctl, reinterpret_cast<const uint8_t*>(a.data()), a.size()) ||
        !recv_all(ctl, b, 2))
      return false;
    if (b[1] != 0) { rep = 0xfe; return false; }
  }
  std::string req = {5, 3, 0};
  put_addr(req, self);
  if (!send_all(ctl, reinterpret_cast<const uint8_t*>(req.data()), req.size()) ||
      !recv_all(ctl, b, 4))
    return false;
  if (b[0] != 5 || b[1] != 0) { rep = b[1]; return false; }
  relay = {};
  if (b[3] == 1) {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&relay);
    if (!recv_all(ctl, b, 6)) return false;
    a4->sin_family = AF_INET;
    memcpy(&a4->sin_addr, b, 4);
    memcpy(&a4->sin_port, b + 4, 2);
    relay_len = sizeof(sockaddr_in);
    // An unspecified address means "where you reached me" (RFC 1928 leaves it open).
    if (a4->sin_addr.s_addr == 0 && o.proxy.addr.ss_family == AF_INET)
      a4->sin_addr = reinterpret_cast<const sockaddr_in*>(&o.proxy.addr)->sin_addr;
  } else if (b[3] == 4) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&relay);
    if (!recv_all(ctl, b, 18)) return false;
    a6->sin6_family = AF_INET6;
    memcpy(&a6->sin6_addr, b, 16);
    memcpy(&a6->sin6_port, b + 16, 2);
    relay_len = sizeof(sockaddr_in6);
    if (IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) && o.proxy.addr.ss_family == AF_INET6)
      a6->sin6_addr = reinterpret_cast<const sockaddr_in6*>(&o.proxy.addr)->sin6_addr;
  } else {
    rep = 0xfd;  // a name: this tool never resolves
    return false;
  }
  return true;
}

void set_bufs(int fd, int bytes) {
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

// One association (or, direct, one UDP socket connected to the target). fd -1 on failure.
Assoc open_assoc(const Options& o, Errors& errs) {
  Assoc a;
  bool direct = o.proxy.kind == ProxyKind::direct;
  const sockaddr_storage& toward = direct ? o.target : o.proxy.addr;
  int fd = socket(toward.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { errs.count_errno(errno); return a; }
  set_bufs(fd, 1 << 20);
  sockaddr_storage self{};
  self.ss_family = toward.ss_family;
  socklen_t self_len = toward.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  // Bound to the loopback address the proxy is reached on, so the request can name it.
  if (toward.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&self)->sin_addr =
        reinterpret_cast<const sockaddr_in*>(&toward)->sin_addr;
  else
    reinterpret_cast<sockaddr_in6*>(&self)->sin6_addr =
        reinterpret_cast<const sockaddr_in6*>(&toward)->sin6_addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&self), self_len) < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&self), &self_len) < 0) {
    errs.count_errno(errno);
    close(fd);
    return a;
  }
  sockaddr_storage peer = o.target;
  socklen_t peer_len = o.target_len;
  if (!direct) {
    int ctl = socket(toward.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{long(o.timeout), long((o.timeout - double(long(o.timeout))) * 1e6)};
    setsockopt(ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(ctl, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rep = -1;
    if (ctl < 0 || connect(ctl, reinterpret_cast<const sockaddr*>(&o.proxy.addr),
                           o.proxy.addr_len) < 0 ||
        !associate(o, ctl, self, peer, peer_len, rep)) {
      if (rep >= 0) errs.proxy_reply++;
      else errs.count_errno(errno);
      if (ctl >= 0) close(ctl);
      close(fd);
      return a;
    }
    a.ctl = ctl;
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&peer), peer_len) < 0) {
    errs.count_errno(errno);
    if (a.ctl >= 0) close(a.ctl);
    close(fd);
    a.ctl = -1;
    return a;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  a.fd = fd;
  return a;
}

void close_assoc(Assoc& a) {
  if (a.fd >= 0) close(a.fd);
  if (a.ctl >= 0) close(a.ctl);
  a.fd = a.ctl = -1;
}

// The UDP echo target: threads, each with a SO_REUSEPORT socket on the address, sending every
// datagram back to where it came from.
class UdpEcho {
 public:
  ~UdpEcho() { stop(); }
  bool start(const sockaddr_storage& addr, socklen_t len, int threads, std::string& err) {
    for (int i = 0; i < threads; i++) {
      int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      int one = 1;
      if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
        err = "udp target: cannot bind " + format_addr(addr) + ": " + strerror(errno);
        if (fd >= 0) close(fd);
        stop();
        return false;
      }
      set_bufs(fd, 4 << 20);
      fds_.push_back(fd);
    }
    for (int fd : fds_) threads_.emplace_back([this, fd] { run(fd); });
    return true;
  }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
    for (int fd : fds_) close(fd);
    fds_.clear();
  }

 private:
  void run(int fd) {
    std::vector<uint8_t> store(size_t{kBatch} * 65536);
    auto bufs = [&](int i) { return store.data() + size_t(i) * 65536; };
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    sockaddr_storage from[kBatch];
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      for (int i = 0; i < kBatch; i++) {
        iov[i] = {bufs(i), 65536};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      }
      int n = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) continue;
      for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
      int off = 0;
      while (off < n) {
        int s = sendmmsg(fd, msgs + off, unsigned(n - off), 0);
        if (s <= 0) break;  // a full buffer: the rest are lost, as on a real path
        off += s;
      }
    }
  }
  std::vector<std::thread> threads_;
  std::vector<int> fds_;
  std::atomic<bool> stop_{false};
};

}  // namespace

Result run_udp(const Options& o, const ProcWatch& pw) {
  Errors errs;
  std::string err;
  UdpEcho echo;
  if (o.target_listen && !echo.start(o.target, o.target_len, o.target_threads, err)) {
    fprintf(stderr, "uringload: %s\n", err.c_str());
    exit(2);
  }
  bool direct = o.proxy.kind == ProxyKind::direct;
  // The datagram: the SOCKS5 UDP header naming the target (none direct), then the payload.
  std::string dgram;
  if (!direct) {
    dgram = {0, 0, 0};
    put_addr(dgram, o.target);
  }
  size_t hdr = dgram.size();
  dgram.append(size_t(o.msg), 'u');
  std::vector<Assoc> as;
  for (int i = 0; i < o.tunnels; i++) {
    Assoc a = open_assoc(o, errs);
    if (a.fd >= 0) as.push_back(a);
  }
  // Warm-up: one echo per association, outside the window (paths set up, the source learned).
  static uint8_t rbufs[kBatch][65536];
  for (auto& a : as) {
    bool ok = false;
    double end = now_s() + o.timeout;
    for (int tries = 0; !ok && now_s() < end; tries++) {
      if (send(a.fd, dgram.data(), dgram.size(), 0) < 0 && errno != EAGAIN) break;
      pollfd p{a.fd, POLLIN, 0};
      if (poll(&p, 1, 200) > 0 && recv(a.fd, rbufs[0], sizeof rbufs[0], 0) == ssize_t(dgram.size()))
        ok = true;
    }
    if (!ok) {
      errs.timeout++;
      close_assoc(a);
    }
  }
  // Drain stray warm-up echoes.
  for (auto& a : as)
    while (a.fd >= 0 && recv(a.fd, rbufs[0], sizeof rbufs[0], MSG_DONTWAIT) > 0) {}
  as.erase(std::remove_if(as.begin(), as.end(), [](const Assoc& a) { return a.fd < 0; }),
           as.end());
  uint32_t window = uint32_t(o.window);
  uint64_t sent = 0, received = 0, lost = 0, short_dgrams = 0, send_fail = 0;
  mmsghdr out[kBatch];
  iovec out_iov;
  out_iov.iov_base = const_cast<char*>(dgram.data());
  out_iov.iov_len = dgram.size();
  for (auto& m : out) {
    m = {};
    m.msg_hdr.msg_iov = &out_iov;
    m.msg_hdr.msg_iovlen = 1;
  }
  mmsghdr in[kBatch];
  iovec in_iov[kBatch];
  for (int i = 0; i < kBatch; i++) {
    in_iov[i] = {rbufs[i], sizeof rbufs[i]};
    in[i] = {};
    in[i].msg_hdr.msg_iov = &in_iov[i];
    in[i].msg_hdr.msg_iovlen = 1;
  }
  auto fill = [&](Assoc& a) {
    while (a.inflight < window) {
      unsigned want = std::min<unsigned>(window - a.inflight, kBatch);
      int s = sendmmsg(a.fd, out, want, MSG_DONTWAIT);
      if (s <= 0) { send_fail++; break; }  // full socket buffer: the timer refills later
      a.inflight += uint32_t(s);
      sent += uint64_t(s);
    }
  };
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (auto& a : as) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &a;
    epoll_ctl(ep, EPOLL_CTL_ADD, a.fd, &ev);
  }
  ProcSample before = pw.sample(false);
  double t0 = now_s();
  double deadline = t0 + o.duration;
  uint64_t now = now_ns();
  for (auto& a : as) {
    a.last_ns = now;
    fill(a);
  }
  epoll_event evs[256];
  uint64_t next_check = now + kLostAfterNs / 5;
  while (!as.empty() && now_s() < deadline) {
    int n = epoll_wait(ep, evs, 256, 10);
    now = now_ns();
    for (int i = 0; i < n; i++) {
      Assoc& a = *static_cast<Assoc*>(evs[i].data.ptr);
      int got = recvmmsg(a.fd, in, kBatch, MSG_DONTWAIT, nullptr);
      if (got <= 0) continue;
      for (int k = 0; k < got; k++)
        if (in[k].msg_len != dgram.size() || (hdr && rbufs[k][3] != uint8_t(dgram[3])))
          short_dgrams++;
      received += uint64_t(got);
      a.inflight = a.inflight > uint32_t(got) ? a.inflight - uint32_t(got) : 0;
      a.last_ns = now;
      fill(a);
    }
    if (now >= next_check) {
      next_check = now + kLostAfterNs / 5;
      for (auto& a : as)
        if (now - a.last_ns > kLostAfterNs) {
          lost += a.inflight;
          a.inflight = 0;
          a.last_ns = now;
          fill(a);
        }
    }
  }
  double secs = now_s() - t0;
  ProcSample after = pw.sample(false);
  close(ep);
  for (auto& a : as) close_assoc(a);
  echo.stop();
  Result r;
  result_head(r, o, "udp");
  r.integer("associations", o.tunnels);
  r.integer("associations_ok", (long long)as.size());
  r.integer("msg", o.msg);
  r.integer("window", o.window);
  r.num("seconds", secs);
  r.integer("sent", (long long)sent);
  r.integer("received", (long long)received);
  r.integer("lost", (long long)lost);
  if (short_dgrams) r.integer("malformed", (long long)short_dgrams);
  double dps = secs > 0 ? double(received) / secs : 0;
  r.num("dgram_s", dps, 0);
  double relayed = double(sent + received);  // through the proxy, each direction counted
  r.num("payload_mbit_s", secs > 0 ? double(received) * o.msg * 8 / secs / 1e6 : 0, 1);
  char cpu[160] = "";
  if (!pw.empty()) {
    double c = after.cpu_s - before.cpu_s;
    r.num("proxy_cpu_s", c, 3);
    double per = relayed > 0 ? c * 1e6 / relayed : 0;
    r.num("proxy_cpu_us_per_dgram", per, 3);
    double gb = relayed * o.msg / 1e9;
    r.num("proxy_cpu_s_per_gb", gb > 0 ? c / gb : 0, 2);
    snprintf(cpu, sizeof cpu, ", proxy %.2f CPU-us/datagram relayed (%.0f%% of a core)", per,
             secs > 0 ? 100 * c / secs : 0);
  }
  report_interference(r, before, after, secs);
  errs.report(r);
  char h[640];
  snprintf(h, sizeof h,
           "udp associations=%d msg=%d window=%d via %s: %.0f datagrams/s echoed "
           "(%llu sent, %llu back, %llu lost)%s%s",
           o.tunnels, o.msg, o.window, o.proxy.text.c_str(), dps, (unsigned long long)sent,
           (unsigned long long)received, (unsigned long long)lost, cpu,
           errors_text(errs).c_str());
  r.human = h;
  return r;
}

}  // namespace uload
