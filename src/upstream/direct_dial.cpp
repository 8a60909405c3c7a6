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
#include "frontend/frontend.h"
#include "upstream/peer_address.h"
#include "upstream/upstream_session.h"

#ifndef IP_BIND_ADDRESS_NO_PORT  // Linux 4.2; glibc's headers may lack the name
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

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
  if (bind_ && bind_names_any(target_)) return bind_listen();  // each peer judged as it comes
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
  if (bind_) return bind_listen();  // the peer must come from one of addrs_
  connect_next();
}

void Connection::connect_next() {
  while (next_addr_ < addrs_.size()) {
    const ResolvedAddress& a = addrs_[next_addr_++];
    // VLESS UDP: a connected UDP socket (its connect completes at once; the kernel then
    // takes datagrams from that address only).
    int type = datagram_ && !upstream_ ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(a.addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_connect_errno_ = errno;
      continue;
    }
    int one = 1;
    if (type == SOCK_STREAM) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Agent mode's source_address: to targets only (never an upstream), and only of the
    // target's family. NO_PORT defers the port to connect, so the 4-tuple, not the source
    // port alone, must be unique: many tunnels from one address do not run out of ports.
    const std::optional<SocketAddress>& src = w_.snapshot().config.source_address;
    if (!upstream_ && src && src->addr.ss_family == a.addr.ss_family) {
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      if (bind(fd, reinterpret_cast<const sockaddr*>(&src->addr), src->len) != 0) {
        last_connect_errno_ = errno;
        close(fd);
        continue;
      }
    }
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
  if (agent_link_ && state_ == State::handshake) return link_connected(res);
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
  state_ = State::replying;  // the frontend's success reply; its completion starts the relay
  frontend_->answer_dialed();
}

void Connection::fail(const Failure& f) {
  if (state_ == State::closed) return;
  cancel_resolve();
  close_target();
  result_ = f.result;
  state_ = State::failing;
  set_deadline_in(2000);  // a client that will not read its error reply is not waited for
  frontend_->answer_failure(f);
}

void Connection::close_target() {
  // Operations still in flight on the target hold their own file reference; cancel them so
  // they complete (their buffers stay alive until the connection is freed or they are done).
  cancel_ops(target_ops_mask);
  if (tls_ && !tls_->handshaking && route_ && route_->config.type != UpstreamType::agent)
    w_.keep_tls_session(route_->config.id, tls_->layer.session());
  if (tfd_ >= 0) {
    w_.close_fd(tfd_);
    tfd_ = -1;
  }
}

}  // namespace up
