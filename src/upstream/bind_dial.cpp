// SOCKS5 BIND (RFC 1928 section 4) on a direct route: the target connects to us. Listen on
// the address the client reached the listener on (port 0) and say where in the first reply;
// accept one connection within connect_timeout_ms from the address the request named
// (resolved, and every address judged by the ACL as a CONNECT's would be), closing any other;
// say who connected in the second reply; then relay as any tunnel. docs/wire.md#bind.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/worker.h"
#include "upstream/dialer.h"
#include "upstream/peer_address.h"
#include "uringproxy/socks5.h"

namespace up {

namespace {
// The peer as the access log and the connection list name a target.
Target as_target(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = "";
  Target t;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    t.port = ntohs(a->sin_port);
  } else {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    t.port = ntohs(a->sin6_port);
  }
  uint16_t port = t.port;
  set_host(ip, t);
  t.port = port;
  return t;
}
}  // namespace

void Dialer::bind_listen() {
  Worker& w = c_.worker();
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  getsockname(c_.fd(Side::client), reinterpret_cast<sockaddr*>(&local), &len);
  unmap_v4(local);  // an IPv4 client of a dual-stack listener: the peer connects over IPv4
  set_port(local, 0);
  len = local.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  auto* sa = reinterpret_cast<sockaddr*>(&local);
  // Plain syscalls: none of them waits (liburing 2.3 has no prep_bind / prep_listen).
  int fd = socket(local.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, sa, len) < 0 || listen(fd, 8) < 0 || getsockname(fd, sa, &len) < 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    UP_WARN("BIND for %s: cannot listen: %s", format_client(c_.client_address()).c_str(),
            strerror(err));
    return c_.fail({Result::error, 0x01, 502});
  }
  c_.set_target_fd(fd);
  uint8_t out[22];
  size_t n = socks5::encode_reply(socks5::Reply::succeeded, sa, out);
  c_.reply_client(out, static_cast<uint32_t>(n));
  bind_arm_accept();
  // The client may give up meanwhile: its close ends the wait. A poll, not a recv, so bytes
  // it sends before the peer arrives stay queued for the relay, in order.
  io_uring_sqe* s = w.sqe();
  io_uring_prep_poll_add(s, c_.fd(Side::client), POLLRDHUP);
  c_.submit(s, Op::bind_hangup);
}

void Dialer::bind_arm_accept() {
  bind_peer_len_ = sizeof addr_;
  io_uring_sqe* s = c_.worker().sqe();
  io_uring_prep_accept(s, c_.fd(Side::target), reinterpret_cast<sockaddr*>(&addr_),
                       &bind_peer_len_, SOCK_NONBLOCK | SOCK_CLOEXEC);
  c_.submit(s, Op::bind_accept);
}

void Dialer::on_bind_accept(int res) {
  Worker& w = c_.worker();
  bool waiting = kind_ == Kind::bind && c_.state() == State::dialing && c_.fd(Side::target) >= 0;
  if (!waiting) {
    if (res >= 0) w.close_fd(res);  // came in as the wait ended (timeout, close, kick)
    return;
  }
  if (res < 0) {
    // A peer that reset before we took it does not end the wait; anything else does.
    if (res == -ECONNABORTED || res == -EINTR) return bind_arm_accept();
    UP_WARN("BIND for %s: accept failed: %s", format_client(c_.client_address()).c_str(),
            strerror(-res));
    return c_.fail({Result::error, 0x01, 502});
  }
  unmap_v4(addr_);
  const auto* peer = reinterpret_cast<const sockaddr*>(&addr_);
  bool expected;
  if (bind_names_any(c_.target())) {
    // No address named: any peer the ACL would let the user reach.
    const Snapshot& snap = w.snapshot();
    expected = snap.acl.address_allowed(peer, snap.find_user_acl(c_.user()), false);
  } else {
    expected = bind_peer_expected(peer, addrs_);
  }
  if (!expected) {
    // Not the peer the client is waiting for: it does not count, the wait goes on.
    w.close_fd(res);
    return bind_arm_accept();
  }
  c_.close_target();  // one connection only: the listening socket goes now
  c_.set_target_fd(res);
  int one = 1;
  setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c_.cancel_ops(1u << static_cast<unsigned>(Op::bind_hangup));
  c_.set_target(as_target(addr_));  // from here the tunnel's target is the peer
  // The second reply; its completion starts the relay.
  uint8_t out[22];
  size_t n = socks5::encode_reply(socks5::Reply::succeeded, peer, out);
  c_.dialed_with_reply(out, static_cast<uint32_t>(n));
}

void Dialer::on_bind_hangup(int res) {
  if (res < 0 || kind_ != Kind::bind || c_.state() != State::dialing) return;  // the peer came
  c_.finish(Result::client_closed);
}

}  // namespace up
