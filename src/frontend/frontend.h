#pragma once
// The frontend phase: the listener's protocol, from the client's first byte to the answer
// that opens the tunnel (or refuses it). One per connection, made at accept (make_frontend):
//
//   Socks5Frontend (frontend/socks5_frontend.cpp): greeting -> userpass -> request
//   HttpFrontend (frontend/http_frontend.cpp): CONNECT, or absolute-URI forwarding with
//       keep-alive (frontend/http_forward.cpp)
//   VlessFrontend (frontend/vless_frontend.cpp): one request header, the user by uuid
//
// A frontend reads into the connection's handshake buffer, authenticates through it
// (core/authenticate.cpp), hands the target to the dialer (route_and_dial), and answers in its
// protocol's words when the dialer reports back; the connection then hands the tunnel to a
// relay. Parsing is left to the pure parsers in src/proto.
#include <cstdint>
#include <memory>

#include "uringproxy/config.h"

namespace up {

class Connection;
struct Failure;

class Frontend {
 public:
  virtual ~Frontend() = default;
  // The client's transport is ready (at once, or after a TLS listener's handshake).
  virtual void begin() = 0;
  // New bytes in the handshake buffer (already counted in it), while the frontend has the
  // client.
  virtual void on_client_data(uint32_t new_bytes) = 0;
  virtual void on_authenticated() = 0;
  // The credentials were refused (after any brute-force delay): the protocol's refusal.
  virtual void answer_auth_failed() = 0;
  // The route is ready: the success reply (its completion starts the relay).
  virtual void answer_dialed() = 0;
  // The dial failed, or the request was refused: the protocol's error reply, if it has one.
  // The connection is already `failing`.
  virtual void answer_failure(const Failure& f) = 0;
  // Only a frontend that keeps its connection past the handshake (agent links) uses these:
  // its deadline came (State::agent), a client send of its own completed, the connection ends.
  virtual void on_timeout() {}
  virtual void on_sent() {}
  virtual void on_finish() {}
};

std::unique_ptr<Frontend> make_frontend(Protocol p, Connection& c);

}  // namespace up
