#include "upstream/upstream_probe.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "upstream/tls_layer.h"
#include "uringproxy/upstream_handshake.h"

namespace up {

namespace {

using Clock = std::chrono::steady_clock;

// A blocking stream over a socket or TLS, every call bounded by the probe's deadline.
struct ProbeStream {
  int fd = -1;
  SSL* ssl = nullptr;
  Clock::time_point deadline;

  ~ProbeStream() {
    if (ssl) SSL_free(ssl);
    if (fd >= 0) close(fd);
  }
  int remaining_ms() const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
  }
  void arm_timeouts() const {
    int ms = std::max(1, remaining_ms());
    timeval tv{ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  bool send_all(const void* data, size_t len) {
    arm_timeouts();
    if (ssl) return SSL_write(ssl, data, static_cast<int>(len)) == static_cast<int>(len);
    const char* p = static_cast<const char*>(data);
    while (len) {
      ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
      if (n <= 0) return false;
      p += n;
      len -= static_cast<size_t>(n);
    }
    return true;
  }
  ssize_t recv_some(void* buf, size_t cap) {
    arm_timeouts();
    if (ssl) return SSL_read(ssl, buf, static_cast<int>(cap));
    return recv(fd, buf, cap, 0);
  }
};

std::string connect_tcp(ProbeStream& s, const UpstreamProxy& cfg) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(cfg.port);
  if (int r = getaddrinfo(cfg.address.c_str(), port.c_str(), &hints, &res); r != 0)
    return "cannot resolve " + cfg.address + ": " + gai_strerror(r);
  std::string err = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int r = connect(fd, a->ai_addr, a->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      r = poll(&p, 1, s.remaining_ms()) == 1 ? 0 : -1;
      int soerr = r == 0 ? 0 : ETIMEDOUT;
      socklen_t len = sizeof soerr;
      if (r == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
      errno = soerr;
      r = soerr ? -1 : 0;
    }
    if (r == 0) {
      int off = 0;  // blocking from here on; every call has a timeout
      ioctl(fd, FIONBIO, &off);
      s.fd = fd;
      freeaddrinfo(res);
      return "";
    }
    err = std::string("connect: ") + strerror(errno);
    close(fd);
  }
  freeaddrinfo(res);
  return err;
}

}  // namespace

std::string probe_upstream(const Upstream& u, const std::string& target, uint32_t timeout_ms) {
  const UpstreamProxy& cfg = u.config;
  ProbeStream s;
  s.deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (std::string err = connect_tcp(s, cfg); !err.empty()) return err;
  if (u.has_tls()) {
    s.ssl = SSL_new(u.tls.get());
    SSL_set_fd(s.ssl, s.fd);
    configure_client_ssl(s.ssl, u.tls.get(),
                         cfg.tls.server_name.empty() ? cfg.address : cfg.tls.server_name);
    s.arm_timeouts();
    ERR_clear_error();
    if (SSL_connect(s.ssl) != 1) {
      long v = SSL_get_verify_result(s.ssl);
      if (v != X509_V_OK) return std::string("TLS: certificate: ") + X509_verify_cert_error_string(v);
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      return std::string("TLS handshake: ") + buf;
    }
  }
  bool socks = cfg.type == UpstreamType::socks5 || cfg.type == UpstreamType::socks5s;
  Target t;
  if (!socks) {
    if (target.empty()) return "";  // http/https without a target: the TCP/TLS stage alone
    if (!parse_authority(target, 0, t)) return "health_check.target is not host:port";
  }
  // The dialer's machine, so the probe judges the upstream as every connection would; SOCKS5
  // stops after the authentication (no CONNECT leaves for the internet).
  UpstreamHandshake hs(socks ? UpstreamHandshake::Protocol::socks5
                             : UpstreamHandshake::Protocol::http,
                       cfg.username, cfg.password, socks ? nullptr : &t);
  char buf[UpstreamHandshake::max_reply];
  for (;;) {
    switch (hs.step()) {
      case UpstreamHandshake::Step::send: {
        std::string_view out = hs.output();
        if (!s.send_all(out.data(), out.size())) return "cannot send its handshake";
        hs.sent();
        break;
      }
      case UpstreamHandshake::Step::recv: {
        ssize_t r = s.recv_some(buf, sizeof buf);
        if (r > 0)
          hs.received({buf, static_cast<size_t>(r)});
        else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || s.remaining_ms() == 0))
          return "timed out during its handshake";  // SO_RCVTIMEO: the deadline passed
        else
          hs.closed(r < 0);
        break;
      }
      case UpstreamHandshake::Step::done:
        return "";
      case UpstreamHandshake::Step::failed:
        return hs.failure().why;
    }
  }
}

}  // namespace up
