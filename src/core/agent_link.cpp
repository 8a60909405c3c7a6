// Agent mode (src/agent): the connection's side of a link this process dials to its
// gateway: TCP, then TLS as the client; then the link's frontend (agent/reverse_link.h) runs it.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "agent/gateway_links.h"
#include "agent/reverse_link.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/tls_io.h"
#include "core/worker.h"

namespace up {

void Connection::start_link() {
  // Posted before a stop began: a link opened now would only hold the drain up.
  if (w_.runtime().stopping.load(std::memory_order_acquire)) return finish(Result::shutdown);
  ReverseLink& link = static_cast<ReverseLink&>(*frontend_);
  GatewayLinks* links = &link.links();
  set_deadline_in(links->handshake_timeout_ms);
  sockaddr_storage& gw = link.gateway_address();
  socklen_t len = 0;
  links->gateway(gw, len);
  if (len == 0) return finish(Result::error);
  cfd_ = socket(gw.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (cfd_ < 0) return finish(Result::error);
  int one = 1;
  setsockopt(cfd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_connect(s, cfd_, reinterpret_cast<const sockaddr*>(&gw), len);
  submit(s, Op::connect);
}

void Connection::link_connected(int res) {
  if (res < 0) return finish(res == -ECONNREFUSED ? Result::refused : Result::unreachable);
  socklen_t len = sizeof client_addr_;
  getpeername(cfd_, reinterpret_cast<sockaddr*>(&client_addr_), &len);
  ReverseLink& link = static_cast<ReverseLink&>(*frontend_);
  const LinkIdentity& id = link.identity();
  ctls_->started_us = monotonic_us();
  SSL_CTX* ctx = link.control() ? id.tls.get() : id.reverse_tls.get();
  if (!ctls_->layer.start(ctx, id.server_name, w_.tls_session(link.session_key(), id.epoch)))
    return tls_handshake_failed(Side::client, "cannot start TLS");
  tls_handshake_step(Side::client);  // done: begin_session(), ReverseLink::begin()
}

}  // namespace up
