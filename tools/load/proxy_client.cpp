#include "proxy_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace uload {

std::string base64(const std::string& in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += tbl[v >> 18]; out += tbl[(v >> 12) & 63]; out += tbl[(v >> 6) & 63]; out += tbl[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += tbl[v >> 18]; out += tbl[(v >> 12) & 63]; out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += tbl[v >> 18]; out += tbl[(v >> 12) & 63]; out += tbl[(v >> 6) & 63]; out += '=';
  }
  return out;
}

void Handshake::start(const ProxySpec& proxy, const sockaddr_storage& target) {
  proxy_ = &proxy;
  target_ = &target;
  kind_ = proxy.kind;
  in_.clear();
  error_ = "";
  reply_code_ = -1;
  if (kind_ == ProxyKind::direct) {
    state_ = State::done;
    step_ = Step::none;
  } else if (kind_ == ProxyKind::socks5) {
    begin_step(Step::greeting);
  } else if (kind_ == ProxyKind::vless) {
    begin_step(Step::vless);
  } else {
    begin_step(Step::http);
  }
}

void Handshake::begin_step(Step s) {
  step_ = s;
  out_.clear();
  out_off_ = 0;
  in_.clear();
  state_ = State::send;
  switch (s) {
    case Step::greeting:
      out_ = proxy_->user.empty() ? std::string("\x05\x01\x00", 3) : std::string("\x05\x01\x02", 3);
      break;
    case Step::auth:
      out_ += char(1);
      out_ += char(proxy_->user.size());
      out_ += proxy_->user;
      out_ += char(proxy_->pass.size());
      out_ += proxy_->pass;
      break;
    case Step::request: {
      out_ = std::string("\x05\x01\x00", 3);
      if (target_->ss_family == AF_INET) {
        auto* a = reinterpret_cast<const sockaddr_in*>(target_);
        out_ += char(1);
        out_.append(reinterpret_cast<const char*>(&a->sin_addr), 4);
        out_.append(reinterpret_cast<const char*>(&a->sin_port), 2);
      } else {
        auto* a = reinterpret_cast<const sockaddr_in6*>(target_);
        out_ += char(4);
        out_.append(reinterpret_cast<const char*>(&a->sin6_addr), 16);
        out_.append(reinterpret_cast<const char*>(&a->sin6_port), 2);
      }
      break;
    }
    case Step::http: {
      std::string hp = format_addr(*target_);
      out_ = "CONNECT " + hp + " HTTP/1.1\r\nHost: " + hp + "\r\n";
      if (!proxy_->user.empty())
        out_ += "Proxy-Authorization: Basic " + base64(proxy_->user + ":" + proxy_->pass) + "\r\n";
      out_ += "\r\n";
      break;
    }
    case Step::vless: {
      // Version 0, the id, no addons, command 1 (TCP), port, then the address.
      out_ = std::string(1, '\0');
      out_.append(reinterpret_cast<const char*>(proxy_->uuid), 16);
      out_ += std::string("\0\1", 2);
      if (target_->ss_family == AF_INET) {
        auto* a = reinterpret_cast<const sockaddr_in*>(target_);
        out_.append(reinterpret_cast<const char*>(&a->sin_port), 2);
        out_ += char(1);
        out_.append(reinterpret_cast<const char*>(&a->sin_addr), 4);
      } else {
        auto* a = reinterpret_cast<const sockaddr_in6*>(target_);
        out_.append(reinterpret_cast<const char*>(&a->sin6_port), 2);
        out_ += char(3);
        out_.append(reinterpret_cast<const char*>(&a->sin6_addr), 16);
      }
      break;
    }
    case Step::none:
      state_ = State::done;
      break;
  }
}

void Handshake::sent(size_t n) {
  out_off_ += n;
  if (out_off_ >= out_.size()) state_ = step_ == Step::vless ? State::done : State::recv;
}

size_t Handshake::feed(const uint8_t* p, size_t n) {
  size_t used = 0;
  while (used < n && state_ == State::recv) {
    // Take one byte at a time only where framing needs it; replies are tiny.
    size_t want = 0;
    switch (step_) {
      case Step::greeting:
      case Step::auth:
        want = 2 - in_.size();
        break;
      case Step::request: {
        if (in_.size() < 5) { want = 5 - in_.size(); break; }
        size_t total = 0;
        uint8_t atyp = uint8_t(in_[3]);
        if (atyp == 1) total = 10;
        else if (atyp == 4) total = 22;
        else if (atyp == 3) total = 7 + uint8_t(in_[4]);
        else { state_ = State::failed; error_ = "bad ATYP in reply"; return used; }
        want = total - in_.size();
        break;
      }
      case Step::http: {
        // Read until CRLFCRLF; the reply has no body for 200.
        size_t i = used;
        while (i < n) {
          in_ += char(p[i++]);
          if (in_.size() >= 4 && in_.compare(in_.size() - 4, 4, "\r\n\r\n") == 0) break;
          if (in_.size() > 16384) { state_ = State::failed; error_ = "reply head too large"; return i; }
        }
        used = i;
        if (in_.size() >= 4 && in_.compare(in_.size() - 4, 4, "\r\n\r\n") == 0) {
          // "HTTP/1.x 200"
          if (in_.size() < 12 || in_.compare(0, 5, "HTTP/") != 0) {
            state_ = State::failed; error_ = "bad HTTP reply"; return used;
          }
          reply_code_ = atoi(in_.c_str() + 9);
          if (reply_code_ / 100 != 2) { state_ = State::failed; error_ = "proxy refused CONNECT"; return used; }
          state_ = State::done;
        }
        continue;
      }
      case Step::vless:
      case Step::none:
        return used;
    }
    size_t take = want < n - used ? want : n - used;
    in_.append(reinterpret_cast<const char*>(p + used), take);
    used += take;
    if (take < want) break;
    // One reply is complete.
    if (step_ == Step::greeting) {
      if (in_[0] != 5) { state_ = State::failed; error_ = "bad SOCKS version"; return used; }
      uint8_t m = uint8_t(in_[1]);
      if (m == 0) begin_step(Step::request);
      else if (m == 2 && !proxy_->user.empty()) begin_step(Step::auth);
      else { state_ = State::failed; error_ = "no acceptable auth method"; reply_code_ = m; return used; }
      return used;
    } else if (step_ == Step::auth) {
      if (in_[1] != 0) { state_ = State::failed; error_ = "auth rejected"; reply_code_ = uint8_t(in_[1]); return used; }
      begin_step(Step::request);
      return used;
    } else if (step_ == Step::request) {
      if (in_.size() < 5) continue;
      uint8_t atyp = uint8_t(in_[3]);
      size_t total = atyp == 1 ? 10 : atyp == 4 ? 22 : 7 + uint8_t(in_[4]);
      if (in_.size() < total) continue;
      reply_code_ = uint8_t(in_[1]);
      if (in_[0] != 5 || in_[1] != 0) { state_ = State::failed; error_ = "SOCKS request failed"; return used; }
      state_ = State::done;
      return used;
    }
  }
  return used;
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int start_connect(const sockaddr_storage& addr, socklen_t len, int& err) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { err = errno; return -1; }
  set_nodelay(fd);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) < 0 && errno != EINPROGRESS) {
    err = errno;
    close(fd);
    return -1;
  }
  err = 0;
  return fd;
}

// Blocking: connect with a timeout, the TLS handshake (with --tls), then the proxy's.
Tunnel open_tunnel_blocking(const Options& o, TlsClient& tls, Errors& errs, bool resume) {
  Tunnel t;
  const bool direct = o.proxy.kind == ProxyKind::direct;
  const sockaddr_storage& dst = direct ? o.target : o.proxy.addr;
  socklen_t dlen = direct ? o.target_len : o.proxy.addr_len;
  int err = 0;
  int fd = start_connect(dst, dlen, err);
  if (fd < 0) { errs.count_errno(err); return t; }
  pollfd pfd{fd, POLLOUT, 0};
  int ms = int(o.timeout * 1000);
  int r = poll(&pfd, 1, ms);
  if (r <= 0) { errs.timeout++; close(fd); return t; }
  socklen_t sl = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl);
  if (err) { errs.count_errno(err); close(fd); return t; }
  // Back to blocking with timeouts.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{long(o.timeout), long((o.timeout - long(o.timeout)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  t.fd = fd;
  if (tls.enabled()) {
    t.ssl = tls.make(fd, resume);
    ssize_t c = t.ssl ? tls_result(t.ssl, SSL_connect(t.ssl)) : (errno = EPROTO, -1);
    if (c <= 0) { errs.count_errno(c < 0 ? errno : ECONNRESET); t.close(); return t; }
    tls.handshaken(t.ssl);
  }
  if (o.proxy.kind == ProxyKind::vless) t.vless.expect();
  Handshake hs;
  hs.start(o.proxy, o.target);
  uint8_t buf[1024];
  while (hs.state() != Handshake::State::done) {
    if (hs.state() == Handshake::State::failed) { errs.proxy_reply++; t.close(); return t; }
    if (hs.state() == Handshake::State::send) {
      ssize_t n = t.send(hs.pending(), hs.pending_len());
      if (n <= 0) { errs.count_errno(n < 0 ? errno : ECONNRESET); t.close(); return t; }
      hs.sent(size_t(n));
    } else {
      // The target speaks only after we do, so nothing follows the final reply.
      ssize_t n = t.recv(buf, sizeof buf);
      if (n <= 0) { errs.count_errno(n < 0 ? errno : ECONNRESET); t.close(); return t; }
      hs.feed(buf, size_t(n));
    }
  }
  return t;
}

int open_tunnel_blocking(const Options& o, Errors& errs) {
  TlsClient none;  // not initialised: plain
  return open_tunnel_blocking(o, none, errs).fd;
}

}  // namespace uload
