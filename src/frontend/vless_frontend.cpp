// VLESS (version 0): the header, then the tunnel is relayed like any other, with `00 00`
// before the first bytes back.
#include "frontend/vless_frontend.h"

#include "auth/auth_guard.h"
#include "core/connection.h"
#include "core/worker.h"
#include "uringproxy/vless.h"

namespace up {

namespace {
constexpr uint32_t header_buffer = 1024;  // the longest header (a 255-byte name) fits
}  // namespace

void VlessFrontend::begin() {
  c_.ensure_handshake_buffer(header_buffer);
  c_.submit_recv_client();
}

void VlessFrontend::on_client_data(uint32_t) {
  if (parsed_) return;
  vless::Request req;
  size_t used = 0;
  vless::Error err = vless::Error::none;
  std::string_view hs = c_.handshake();
  const auto* in = reinterpret_cast<const uint8_t*>(hs.data());
  switch (vless::parse_request({in, hs.size()}, req, used, err)) {
    case vless::Parse::need_more:
      return c_.read_more_handshake();
    case vless::Parse::error:
      return c_.finish(Result::bad_request);
    case vless::Parse::done:
      break;
  }
  parsed_ = true;
  c_.consume_handshake(static_cast<uint32_t>(used));
  Worker& w = c_.worker();
  if (w.runtime().auth_guard->blocked(c_.client_key(), w.now_ms())) {
    w.runtime().auth_blocked.fetch_add(1, std::memory_order_relaxed);
    return c_.finish(Result::auth_failed);
  }
  // The id is the credential: an unknown or disabled one is a failed login (counted, and
  // throttled like wrong passwords), answered by a close.
  const User* u = w.snapshot().find_user_by_uuid(vless::format_uuid(req.id));
  if (!u || !u->enabled) return c_.on_auth_failed();
  c_.set_user(u->username);
  if (req.cmd == vless::Command::mux) return c_.finish(Result::unsupported);
  // UDP: datagrams to the one destination the header names (relay/datagram_relay.cpp).
  if (req.cmd == vless::Command::udp) c_.set_datagram();
  c_.set_target(req.target);
  c_.on_authenticated();  // counts the user, then routes and dials
}

void VlessFrontend::on_authenticated() { c_.route_and_dial(); }

void VlessFrontend::answer_auth_failed() { c_.fail({Result::auth_failed, 0x01, 407}); }

void VlessFrontend::answer_dialed() {
  uint8_t header[2];
  c_.reply_client(header, static_cast<uint32_t>(vless::encode_response(header)));
}

void VlessFrontend::answer_failure(const Failure& f) { c_.finish(f.result); }

}  // namespace up
