// Direct route: resolve (c-ares, cached), check every address against the ACL (so a name
// that resolves to a private address is refused: DNS rebinding), then connect to each address
// in turn until one answers or connect_timeout_ms passes.
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/connection.h"
#include "core/worker.h"
#include "relay/http_forward.h"
#include "upstream/upstream_session.h"
#include "uringproxy/http.h"
#include "uringproxy/socks5.h"
#include "uringproxy/vless.h"

namespace up {

namespace {
Failure failure_for_errno(int err) {
  switch (err) {
    case ECONNREFUSED: return {Result::refused, 0x05, 502};
    case ENETUNREACH: return {Result::unreachable, 0x03, 502};
    case EHOSTUNREACH: return {Result::unreachable, 0x04, 502};
    case ETIMEDOUT: return {Result::timeout, 0x06, 504};
    default: return {Result::error, 0x01, 502};
  }
}
}  // namespace

void Connection::dial() {
  if (udp_) return udp_dialed();  // a direct UDP association dials nothing
  state_ = State::dialing;
  addrs_.clear();
  next_addr_ = 0;
  last_connect_errno_ = 0;
  set_deadline_in(w_.snapshot().config.upstream.connect_timeout_ms);
  if (target_.is_literal()) {
    ResolvedAddress a{};
    a.len = target_.to_sockaddr(a.addr);
    return on_resolved(ARES_SUCCESS, {a});
  }
  resolving_ = true;
  w_.dns().resolve(target_.host, this, w_.now_ms());
}

void Connection::on_resolved(int status, const std::vector<ResolvedAddress>& addrs) {
  resolving_ = false;
  if (state_ != State::dialing) return;
  if (upstream_) {
    // The upstream's own address: the operator chose it, so no ACL applies.
    if (status != ARES_SUCCESS)
      return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                     "its address does not resolve");
    uint16_t port = upstream_->current()->config.port;
    for (const ResolvedAddress& a : addrs) {
      ResolvedAddress b = a;
      if (b.addr.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&b.addr)->sin_port = htons(port);
      else
        reinterpret_cast<sockaddr_in6*>(&b.addr)->sin6_port = htons(port);
      addrs_.push_back(b);
      if (addrs_.size() == 8) break;
    }
    upstream_->phase = UpstreamSession::Phase::connecting;
    return connect_next();
  }
  if (status != ARES_SUCCESS) return fail({Result::dns_failed, 0x04, 502});
  const Snapshot& snap = w_.snapshot();
  const UserAcl* uacl = snap.find_user_acl(user_);
  for (const ResolvedAddress& a : addrs) {
    if (!snap.acl.address_allowed(reinterpret_cast<const sockaddr*>(&a.addr), uacl, name_allowed_))
      continue;
    ResolvedAddress b = a;
    if (b.addr.ss_family == AF_INET)
      reinterpret_cast<sockaddr_in*>(&b.addr)->sin_port = htons(target_.port);
    else
      reinterpret_cast<sockaddr_in6*>(&b.addr)->sin6_port = htons(target_.port);
    addrs_.push_back(b);
    if (addrs_.size() == 8) break;  // bounded attempts within one connect timeout
  }
  if (addrs_.empty()) return fail({Result::denied, 0x02, 403});
  connect_next();
}

void Connection::connect_next() {
  while (next_addr_ < addrs_.size()) {
    const ResolvedAddress& a = addrs_[next_addr_++];
    int fd = socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_connect_errno_ = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    tfd_ = fd;
    target_addr_ = a.addr;
    io_uring_sqe* s = w_.sqe();
    io_uring_prep_connect(s, fd, reinterpret_cast<const sockaddr*>(&target_addr_), a.len);
    io_uring_sqe_set_data64(s, pack(this, Op::connect));
    mark(Op::connect);
    return;
  }
  if (upstream_)
    return upstream_attempt_failed(failure_for_errno(last_connect_errno_), true,
                                   strerror(last_connect_errno_));
  fail(failure_for_errno(last_connect_errno_));
}

void Connection::on_connect(int res) {
  if (state_ != State::dialing) return;
  if (res == 0) return upstream_ ? upstream_connected() : on_dialed();
  w_.close_fd(tfd_);
  tfd_ = -1;
  last_connect_errno_ = -res;
  connect_next();
}

void Connection::on_dialed() {
  if (dial_started_us_) w_.stats().observe_connect(monotonic_us() - dial_started_us_);
  if (udp_) return udp_dialed();
  if (fwd_) return fwd_->on_dialed();
  state_ = State::replying;
  if (protocol_ == Protocol::http) {
    std::string_view ok = http::status_response(200);
    return submit_send_client(ok.data(), static_cast<uint32_t>(ok.size()));
  }
  if (protocol_ == Protocol::vless) {
    uint8_t header[2];
    return reply_client(header, static_cast<uint32_t>(vless::encode_response(header)));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(tfd_, reinterpret_cast<sockaddr*>(&bound), &len);
  uint8_t out[22];
  size_t n = socks5::encode_reply(socks5::Reply::succeeded, reinterpret_cast<sockaddr*>(&bound),
                                  out);
  reply_client(out, static_cast<uint32_t>(n));
}

void Connection::fail(const Failure& f) {
  if (state_ == State::closed) return;
  cancel_resolve();
  close_target();
  result_ = f.result;
  state_ = State::failing;
  set_deadline_in(2000);  // a client that will not read its error reply is not waited for
  if (protocol_ == Protocol::vless) return finish(f.result);  // VLESS has no error reply
  if (protocol_ == Protocol::http) {
    std::string_view r = http::status_response(f.http_status);
    if (client_send_pending()) return finish(f.result);
    return submit_send_client(r.data(), static_cast<uint32_t>(r.size()));
  }
  uint8_t out[22];
  size_t n = socks5::encode_reply(static_cast<socks5::Reply>(f.socks_reply), nullptr, out);
  reply_client(out, static_cast<uint32_t>(n));
}

void Connection::close_target() {
  // Operations still in flight on the target hold their own file reference; cancel them so
  // they complete (their buffers stay alive until the connection is freed or they are done).
  cancel_ops(target_ops_mask);
  if (tls_ && !tls_->handshaking && route_)
    w_.keep_tls_session(route_->config.id, tls_->layer.session());
  if (tfd_ >= 0) {
    w_.close_fd(tfd_);
    tfd_ = -1;
  }
}

}  // namespace up
