#pragma once
// The client side of an upstream proxy's own handshake (docs/wire.md, "Through an upstream"):
// SOCKS5 greeting, RFC 1929 authentication and CONNECT, or HTTP CONNECT with Basic auth. A
// state machine with no I/O: the dialer (on a worker's ring) and the health probe (blocking,
// on its own thread) drive this same object, so both judge an upstream the same way. socks5s
// and https send the same bytes inside TLS; the caller does the TLS.
//
// Driving it: while step() is send, send output() whole, then call sent(); while it is recv,
// pass whatever arrived to received() (any split: one byte at a time, or a reply with tunnel
// bytes behind it), or closed() when the upstream closed. It ends in done (leftover() holds
// the tunnel bytes that came with the last reply) or failed (failure() says why and what the
// client is answered).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "uringproxy/target.h"

namespace up {

class UpstreamHandshake {
 public:
  enum class Protocol : uint8_t { socks5, http };
  // What a SOCKS5 handshake asks for once authenticated (HTTP only has CONNECT).
  enum class Request : uint8_t { connect, udp_associate };
  enum class Step : uint8_t { send, recv, done, failed };

  struct Failure {
    // upstream: the upstream misbehaved or refused us (mark it down; the next attempt follows).
    // after_request: it closed after our CONNECT: the target's failure, not the upstream's
    //   (the next attempt follows; it stays up).
    // target: it refused the target in its reply (the client gets that answer at once).
    enum class Fault : uint8_t { upstream, after_request, target };
    Fault fault = Fault::upstream;
    uint8_t socks_reply = 0x01;  // what a SOCKS5 client is answered (RFC 1928 REP)
    int http_status = 502;       // what an HTTP client is answered
    std::string why;             // for the log and `proxy test`, e.g. "refused our username/password"
  };

  // Replies longer than this (an HTTP head, with its blank line) fail the handshake.
  static constexpr size_t max_reply = 8192;

  // `target` null: a SOCKS5 probe that ends after the authentication, with no CONNECT (HTTP
  // has no handshake without one: an HTTP probe without a target does not use this class).
  // The username is used when not empty. A message that cannot be encoded (SOCKS5 credentials
  // over 255 bytes) fails at once. For udp_associate, `target` is where we will send from
  // (0.0.0.0:0 when not known yet, RFC 1928).
  UpstreamHandshake(Protocol protocol, std::string_view username, std::string_view password,
                    const Target* target, Request request = Request::connect);

  Step step() const { return step_; }
  // step() == send: the next message, whole (empty in any other step).
  std::string_view output() const;
  // The caller has sent output() whole; step() becomes recv.
  void sent();
  // step() == recv: bytes from the upstream, any amount. Returns the new step.
  Step received(std::span<const char> in);
  // step() == recv: the upstream closed (reset: with a reset) before its reply was complete.
  Step closed(bool reset);
  // step() == done: bytes that arrived behind the last reply; they belong to the tunnel.
  std::string_view leftover() const { return in_; }
  // step() == failed.
  const Failure& failure() const { return failure_; }
  // step() == done, SOCKS5 with a request: BND.ADDR/BND.PORT of the reply (for UDP ASSOCIATE,
  // the upstream's relay).
  const Target& bound() const { return bound_; }

 private:
  // The message we sent last and now wait for the answer to (or are about to send).
  enum class Stage : uint8_t { greeting, auth, request };

  Step send(Stage s);
  std::string stage_name() const;  // the message we wait for an answer to, for `why`
  Step fail(Failure::Fault fault, uint8_t socks_reply, int http_status, std::string why);
  Step fail_upstream(std::string why) { return fail(Failure::Fault::upstream, 1, 502, std::move(why)); }
  Step on_greeting_reply();
  Step on_auth_reply();
  Step on_socks_reply();
  Step on_http_reply();

  Protocol protocol_;
  Stage stage_ = Stage::greeting;
  Step step_ = Step::send;
  bool offer_userpass_ = false;  // a username is set
  bool connect_ = true;          // false: a SOCKS5 probe, done after the authentication
  Request request_kind_ = Request::connect;
  std::string greeting_, auth_, request_;  // encoded up front: the messages we may send
  std::string in_;  // the reply received so far; after done, the tunnel's bytes
  Failure failure_;
  Target bound_;
};

}  // namespace up
