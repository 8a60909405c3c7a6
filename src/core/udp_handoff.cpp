// The connection's side of SOCKS5 UDP ASSOCIATE (the relay itself is udp/udp_association.cpp):
// route the request (direct, or an association opened on a socks5 upstream), answer with the
// relay's address, then watch the control connection(s): the association lives as long as
// they do (RFC 1928 section 7).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "core/connection.h"
#include "core/log.h"
#include "core/worker.h"
#include "udp/udp_association.h"
#include "upstream/dialer.h"
#include "upstream/peer_address.h"
#include "upstream/upstream_session.h"
#include "uringproxy/socks5.h"

namespace up {

void Connection::udp_associate(const Target& named) {
  udp_ = std::make_unique<UdpAssociation>(w_, *this, named, client_addr_);
  route_and_dial();  // limits and the route; dial() and on_dialed() come back to udp_dialed()
}

void Connection::udp_dialed() {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  getsockname(cfd_, reinterpret_cast<sockaddr*>(&local), &len);
  unmap_v4(local);  // the relay socket and the reply speak the client's family
  sockaddr_storage relay{};
  const sockaddr_storage* via = nullptr;
  const UpstreamSession* us = dialer_ ? dialer_->upstream() : nullptr;
  if (us) {
    // The upstream's relay; an unspecified BND.ADDR (common) means its control address.
    const Target& r = us->relay;
    static const uint8_t zero[16] = {};
    if (!r.is_literal() || r.port == 0) {
      return fail({Result::upstream_error, 0x01, 502});
    }
    if (memcmp(r.ip, zero, r.kind == Target::Kind::ipv4 ? 4 : 16) == 0) {
      len = sizeof relay;
      getpeername(tfd_, reinterpret_cast<sockaddr*>(&relay), &len);
    } else {
      r.to_sockaddr(relay);
    }
    set_port(relay, r.port);
    via = &relay;
  }
  if (int err = udp_->open(local, via)) {
    if (err == EOPNOTSUPP) return fail({Result::unsupported, 0x07, 400});
    UP_WARN("UDP ASSOCIATE for %s: cannot open the relay socket: %s",
            format_client(client_addr_).c_str(), strerror(err));
    return fail({Result::error, 0x01, 502});
  }
  state_ = State::udp;
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  udp_->start();
  uint8_t out[22];
  size_t n = socks5::encode_reply(socks5::Reply::succeeded,
                                  reinterpret_cast<const sockaddr*>(&udp_->bound()), out);
  reply_client(out, static_cast<uint32_t>(n));
  // From here the control connections only say when the association ends.
  hs_len_ = 0;
  submit_recv_client();
  if (us && tfd_ >= 0) submit_recv_target(us->buf.get(), UpstreamSession::buf_cap);
}

void Connection::udp_on_control(Side s, int res) {
  if (res <= 0) {
    if (s == Side::target) return finish(Result::upstream_error);  // the upstream ended it
    return finish(res == 0 ? Result::ok : Result::reset);
  }
  // RFC 1928 gives the control connection nothing more to carry: bytes on it are ignored.
  if (s == Side::client) {
    hs_len_ = 0;
    return submit_recv_client();
  }
  submit_recv_target(dialer_->upstream()->buf.get(), UpstreamSession::buf_cap);
}

void Connection::udp_retry() {
  if (state_ == State::udp) udp_->retry();
}

bool Connection::udp_drained() const { return !udp_ || udp_->drained(); }

}  // namespace up
