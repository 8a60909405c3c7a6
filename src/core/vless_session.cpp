// VLESS (version 0) over a TLS listener: one request header names the user (by uuid), the
// command and the target; then the tunnel is relayed like any other, with `00 00` before the
// first bytes back. VLESS has no error replies: every refusal is a close.
#include "auth/auth_guard.h"
#include "core/connection.h"
#include "core/worker.h"
#include "uringproxy/vless.h"

namespace up {

void Connection::vless_header() {
  vless::Request req;
  size_t used = 0;
  vless::Error err = vless::Error::none;
  const auto* in = reinterpret_cast<const uint8_t*>(hs_.get());
  switch (vless::parse_request({in, hs_len_}, req, used, err)) {
    case vless::Parse::need_more:
      return read_more_handshake();
    case vless::Parse::error:
      return finish(Result::bad_request);
    case vless::Parse::done:
      break;
  }
  consume_handshake(static_cast<uint32_t>(used));
  if (w_.runtime().auth_guard->blocked(client_key(), w_.now_ms())) {
    w_.runtime().auth_blocked.fetch_add(1, std::memory_order_relaxed);
    return finish(Result::auth_failed);
  }
  // The id is the credential: an unknown or disabled one is a failed login (counted, and
  // throttled like wrong passwords), answered by a close.
  const User* u = w_.snapshot().find_user_by_uuid(vless::format_uuid(req.id));
  if (!u || !u->enabled) return on_auth_failed();
  user_ = u->username;
  group_.clear();
  if (req.cmd != vless::Command::tcp) return finish(Result::unsupported);  // UDP, mux: not here
  target_ = std::move(req.target);
  on_authenticated();  // counts the user, then routes and dials
}

}  // namespace up
