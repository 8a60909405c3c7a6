#include "upstream/upstream_probe.h"

#include <netdb.h>
#include <openssl/err.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "upstream/tls_layer.h"
#include "uringproxy/http.h"
#include "uringproxy/socks5.h"

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
  bool recv_exact(uint8_t* buf, size_t n) {
    size_t got = 0;
    while (got < n) {
      ssize_t r = recv_some(buf + got, n - got);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
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
  if (cfg.type == UpstreamType::socks5 || cfg.type == UpstreamType::socks5s) {
    uint8_t buf[600];
    size_t n = socks5::encode_greeting(!cfg.username.empty(), buf);
    if (!s.send_all(buf, n) || !s.recv_exact(buf, 2)) return "no SOCKS5 greeting reply";
    if (buf[0] != 5) return "not a SOCKS5 server";
    if (buf[1] == socks5::method_userpass && !cfg.username.empty()) {
      n = socks5::encode_userpass(cfg.username, cfg.password, buf);
      if (!s.send_all(buf, n) || !s.recv_exact(buf, 2)) return "no SOCKS5 auth reply";
      if (buf[1] != 0) return "SOCKS5 authentication refused";
    } else if (buf[1] != socks5::method_no_auth) {
      return "refused every SOCKS5 authentication method offered";
    }
    return "";
  }
  if (target.empty()) return "";  // http/https without a target: the TCP/TLS stage alone
  Target t;
  if (!parse_authority(target, 0, t)) return "health_check.target is not host:port";
  std::string req = http::encode_connect(
      t, cfg.username.empty() ? std::string() : http::basic_credentials(cfg.username, cfg.password));
  if (!s.send_all(req.data(), req.size())) return "cannot send CONNECT";
  char buf[8192];
  size_t len = 0;
  for (;;) {
    ssize_t r = s.recv_some(buf + len, sizeof buf - len);
    if (r <= 0) return "no answer to CONNECT";
    len += static_cast<size_t>(r);
    http::ResponseHead head;
    switch (http::parse_response_head({buf, len}, head)) {
      case http::Parse::need_more:
        if (len == sizeof buf) return "CONNECT answer too long";
        continue;
      case http::Parse::error:
        return "malformed answer to CONNECT";
      case http::Parse::done:
        if (head.status >= 200 && head.status < 300) return "";
        return "CONNECT " + target + " answered " + std::to_string(head.status);
    }
  }
}

}  // namespace up
