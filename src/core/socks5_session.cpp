// SOCKS5 handshake states: greeting -> userpass -> request (RFC 1928, RFC 1929).
#include <sys/socket.h>

#include "core/connection.h"
#include "core/worker.h"
#include "uringproxy/socks5.h"

namespace up {

namespace {
std::span<const uint8_t> bytes(const char* p, uint32_t n) {
  return {reinterpret_cast<const uint8_t*>(p), n};
}
}  // namespace

void Connection::on_client_data() {
  switch (state_) {
    case State::greeting:
      socks5_greeting();
      return;
    case State::userpass:
      socks5_userpass();
      return;
    case State::request:
      socks5_request();
      return;
    case State::http_head:
      http_head();
      return;
    case State::vless_header:
      vless_header();
      return;
    default:
      return;  // bytes pipelined behind the handshake wait in hs_ for the relay
  }
}

void Connection::read_more_handshake() {
  if (hs_len_ == hs_cap_) return finish(Result::bad_request);  // no valid message is that long
  submit_recv_client();
}

void Connection::next_handshake_message() {
  if (hs_len_ > 0) return on_client_data();  // pipelined behind the last one
  submit_recv_client();
}

void Connection::socks5_greeting() {
  socks5::Greeting g;
  size_t used = 0;
  switch (socks5::parse_greeting(bytes(hs_.get(), hs_len_), g, used)) {
    case socks5::Parse::need_more:
      return read_more_handshake();
    case socks5::Parse::error:
      return finish(Result::bad_request);
    case socks5::Parse::done:
      break;
  }
  consume_handshake(static_cast<uint32_t>(used));
  bool auth = w_.snapshot().config.auth_required;
  uint8_t method = socks5::method_none_acceptable;
  if (!auth && g.no_auth)
    method = socks5::method_no_auth;
  else if (g.userpass)
    method = socks5::method_userpass;  // with auth: none, any credentials are accepted
  uint8_t out[2];
  reply_client(out, static_cast<uint32_t>(socks5::encode_method_choice(method, out)));
  if (method == socks5::method_none_acceptable) {
    result_ = Result::auth_failed;
    state_ = State::failing;
    return;
  }
  state_ = method == socks5::method_userpass ? State::userpass : State::request;
  next_handshake_message();
}

void Connection::socks5_userpass() {
  socks5::Credentials cred;
  size_t used = 0;
  switch (socks5::parse_userpass(bytes(hs_.get(), hs_len_), cred, used)) {
    case socks5::Parse::need_more:
      return read_more_handshake();
    case socks5::Parse::error: {
      // RFC 1929: a failure status, then the server closes; the client sees a refused login
      // (a NUL in a field, a bad version) rather than a bare reset.
      uint8_t no[2];
      reply_client(no, static_cast<uint32_t>(socks5::encode_auth_status(false, no)));
      result_ = Result::bad_request;
      state_ = State::failing;
      set_deadline_in(2000);  // as for any error reply
      return;
    }
    case socks5::Parse::done:
      break;
  }
  // Copy out before consuming: the views point into hs_.
  std::string user(cred.username), pass(cred.password);
  consume_handshake(static_cast<uint32_t>(used));
  authenticate(user, pass);
}

void Connection::socks5_request() {
  socks5::Request req;
  socks5::Reply reply = socks5::Reply::general_failure;
  size_t used = 0;
  switch (socks5::parse_request(bytes(hs_.get(), hs_len_), req, used, reply)) {
    case socks5::Parse::need_more:
      return read_more_handshake();
    case socks5::Parse::error: {
      Result r = reply == socks5::Reply::general_failure ? Result::bad_request
                                                         : Result::unsupported;
      return fail({r, static_cast<uint8_t>(reply), 400});
    }
    case socks5::Parse::done:
      break;
  }
  consume_handshake(static_cast<uint32_t>(used));
  if (req.cmd == socks5::Command::udp_associate) return udp_associate(req.target);
  target_ = std::move(req.target);
  if (req.cmd != socks5::Command::connect)  // BIND has not landed yet
    return fail({Result::unsupported, 0x07, 400});
  route_and_dial();
}

}  // namespace up
