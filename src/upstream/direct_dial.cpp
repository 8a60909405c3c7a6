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
#include "upstream/dialer.h"
#include "core/worker.h"
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

Dialer::Dialer(Connection& c, Kind kind) : c_(c), kind_(kind), started_us_(monotonic_us()) {}

Dialer::~Dialer() {
  cancel_resolve();
  set_agent_waiting(false);
}

void Dialer::direct() {
  if (allowed_by_name(c_.worker().snapshot().acl.check_target(c_.target(), nullptr))) dial();
}

void Dialer::dial() {
  if (kind_ == Kind::udp) return c_.dialed();  // a direct UDP association dials nothing
  Worker& w = c_.worker();
  addrs_.clear();
  next_addr_ = 0;
  last_connect_errno_ = 0;
  c_.set_deadline_in(w.snapshot().config.upstream.connect_timeout_ms);
  const Target& target = c_.target();
  if (kind_ == Kind::bind && bind_names_any(target)) return bind_listen();  // peers judged as they come
  if (target.is_literal()) {
    ResolvedAddress a{};
    a.len = target.to_sockaddr(a.addr);
    return on_resolved(ARES_SUCCESS, {a});
  }
  resolving_ = true;
  w.dns().resolve(target.host, this, w.now_ms());
}

void Dialer::cancel_resolve() {
  if (!resolving_) return;
  // The name being resolved: the upstream's while an upstream route is dialled, else the target's.
  c_.worker().dns().cancel(upstream_ ? upstream_->current()->config.address : c_.target().host,
                           this);
  resolving_ = false;
}

void Dialer::on_resolved(int status, const std::vector<ResolvedAddress>& addrs) {
  resolving_ = false;
  if (c_.state() != State::dialing) return;
  if (upstream_) {
    // The upstream's own address: the operator chose it, so no ACL applies.
    if (status != ARES_SUCCESS)
      return attempt_failed({Result::upstream_error, 0x01, 502}, true,
                            "its address does not resolve");
    uint16_t port = upstream_->current()->config.port;
    for (const ResolvedAddress& a : addrs) {
      addrs_.push_back(a);
      set_port(addrs_.back().addr, port);
      if (addrs_.size() == 8) break;
    }
    upstream_->phase = UpstreamSession::Phase::connecting;
    return connect_next();
  }
  if (status != ARES_SUCCESS) return c_.fail({Result::dns_failed, 0x04, 502});
  const Snapshot& snap = c_.worker().snapshot();
  const UserAcl* uacl = snap.find_user_acl(c_.user());
  for (const ResolvedAddress& a : addrs) {
    if (!snap.acl.address_allowed(reinterpret_cast<const sockaddr*>(&a.addr), uacl, name_allowed_))
      continue;
    addrs_.push_back(a);
    set_port(addrs_.back().addr, c_.target().port);
    if (addrs_.size() == 8) break;  // bounded attempts within one connect timeout
  }
  if (addrs_.empty()) return c_.fail({Result::denied, 0x02, 403});
  if (kind_ == Kind::bind) return bind_listen();  // the peer must come from one of addrs_
  connect_next();
}

void Dialer::connect_next() {
  Worker& w = c_.worker();
  while (next_addr_ < addrs_.size()) {
    const ResolvedAddress& a = addrs_[next_addr_++];
    // VLESS UDP: a connected UDP socket (its connect completes at once; the kernel then
    // takes datagrams from that address only).
    int type = kind_ == Kind::datagram && !upstream_ ? SOCK_DGRAM : SOCK_STREAM;
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
    const std::optional<SocketAddress>& src = w.snapshot().config.source_address;
    if (!upstream_ && src && src->addr.ss_family == a.addr.ss_family) {
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      if (bind(fd, reinterpret_cast<const sockaddr*>(&src->addr), src->len) != 0) {
        last_connect_errno_ = errno;
        close(fd);
        continue;
      }
    }
    c_.set_target_fd(fd);
    addr_ = a.addr;
    io_uring_sqe* s = w.sqe();
    io_uring_prep_connect(s, fd, reinterpret_cast<const sockaddr*>(&addr_), a.len);
    c_.submit(s, Op::connect);
    return;
  }
  if (upstream_)
    return attempt_failed(failure_for_errno(last_connect_errno_), true,
                          strerror(last_connect_errno_));
  c_.fail(failure_for_errno(last_connect_errno_));
}

void Dialer::on_connect(int res) {
  if (c_.state() != State::dialing) return;
  if (res == 0) return upstream_ ? upstream_connected() : dialed();
  c_.close_target();
  last_connect_errno_ = -res;
  connect_next();
}

void Dialer::dialed() {
  c_.worker().stats().observe_connect(monotonic_us() - started_us_);
  c_.dialed();
}

}  // namespace up
