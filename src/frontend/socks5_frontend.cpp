// SOCKS5 handshake steps: greeting -> userpass -> request (RFC 1928, RFC 1929). A client may
// pipeline them: each step parses what is already in the handshake buffer before reading on.
#include "frontend/socks5_frontend.h"

#include <sys/socket.h>

#include "core/connection.h"
#include "core/worker.h"
#include "uringproxy/socks5.h"

namespace up {

namespace {
std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
constexpr uint32_t socks5_buffer = 1024;  // a greeting, 513-byte userpass and a request fit
}  // namespace

void Socks5Frontend::begin() {
  c_.ensure_handshake_buffer(socks5_buffer);
  c_.submit_recv_client();
}

void Socks5Frontend::on_client_data(uint32_t) {
  switch (step_) {
    case Step::greeting: return greeting();
    case Step::userpass: return userpass();
    case Step::request: return request();
    case Step::done: return;  // bytes pipelined behind the request wait for the relay
  }
}

void Socks5Frontend::greeting() {
  socks5::Greeting g;
  size_t used = 0;
  switch (socks5::parse_greeting(bytes(c_.handshake()), g, used)) {
    case socks5::Parse::need_more:
      return c_.read_more_handshake();
    case socks5::Parse::error:
      return c_.finish(Result::bad_request);
    case socks5::Parse::done:
      break;
  }
  c_.consume_handshake(static_cast<uint32_t>(used));
  bool auth = c_.worker().snapshot().config.auth_required;
  uint8_t method = socks5::method_none_acceptable;
  if (!auth && g.no_auth)
    method = socks5::method_no_auth;
  else if (g.userpass)
    method = socks5::method_userpass;  // with auth: none, any credentials are accepted
  uint8_t out[2];
  c_.reply_client(out, static_cast<uint32_t>(socks5::encode_method_choice(method, out)));
  if (method == socks5::method_none_acceptable) return c_.fail_after_reply(Result::auth_failed);
  step_ = method == socks5::method_userpass ? Step::userpass : Step::request;
  c_.next_handshake_message();
}

void Socks5Frontend::userpass() {
  socks5::Credentials cred;
  size_t used = 0;
  switch (socks5::parse_userpass(bytes(c_.handshake()), cred, used)) {
    case socks5::Parse::need_more:
      return c_.read_more_handshake();
    case socks5::Parse::error: {
      // RFC 1929: a failure status, then the server closes; the client sees a refused login
      // (a NUL in a field, a bad version) rather than a bare reset.
      uint8_t no[2];
      c_.reply_client(no, static_cast<uint32_t>(socks5::encode_auth_status(false, no)));
      c_.fail_after_reply(Result::bad_request);
      c_.set_deadline_in(2000);  // as for any error reply
      return;
    }
    case socks5::Parse::done:
      break;
  }
  // Copy out before consuming: the views point into the handshake buffer.
  std::string user(cred.username), pass(cred.password);
  c_.consume_handshake(static_cast<uint32_t>(used));
  c_.authenticate(user, pass);
}

void Socks5Frontend::on_authenticated() {
  static const uint8_t ok[2] = {0x01, 0x00};
  c_.reply_client(ok, 2);
  step_ = Step::request;
  c_.next_handshake_message();
}

void Socks5Frontend::answer_auth_failed() {
  static const uint8_t no[2] = {0x01, 0x01};
  c_.reply_client(no, 2);  // RFC 1929: the server closes after a failure status
  c_.fail_after_reply(Result::auth_failed);
}

void Socks5Frontend::request() {
  socks5::Request req;
  socks5::Reply reply = socks5::Reply::general_failure;
  size_t used = 0;
  switch (socks5::parse_request(bytes(c_.handshake()), req, used, reply)) {
    case socks5::Parse::need_more:
      return c_.read_more_handshake();
    case socks5::Parse::error: {
      Result r = reply == socks5::Reply::general_failure ? Result::bad_request
                                                         : Result::unsupported;
      return c_.fail({r, static_cast<uint8_t>(reply), 400});
    }
    case socks5::Parse::done:
      break;
  }
  step_ = Step::done;
  c_.consume_handshake(static_cast<uint32_t>(used));
  if (req.cmd == socks5::Command::udp_associate) return c_.udp_associate(req.target);
  c_.set_target(req.target);
  if (req.cmd == socks5::Command::bind) return c_.bind_request();
  c_.route_and_dial();
}

void Socks5Frontend::answer_dialed() {
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(c_.fd(Side::target), reinterpret_cast<sockaddr*>(&bound), &len);
  uint8_t out[22];
  size_t n = socks5::encode_reply(socks5::Reply::succeeded, reinterpret_cast<sockaddr*>(&bound),
                                  out);
  c_.reply_client(out, static_cast<uint32_t>(n));
}

void Socks5Frontend::answer_failure(const Failure& f) {
  uint8_t out[22];
  size_t n = socks5::encode_reply(static_cast<socks5::Reply>(f.socks_reply), nullptr, out);
  c_.reply_client(out, static_cast<uint32_t>(n));
}

}  // namespace up
