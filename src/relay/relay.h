#pragma once
// The relay phase: what a tunnel does once both sides are ready, until it ends. A connection
// hands itself to one relay (make_relay) after the frontend has answered the client:
//
//   SpliceRelay (relay/splice_relay.h): both sides plain TCP. Small messages through the
//       worker's provided buffers, bulk through pipes with splice(2).
//   CopyRelay (relay/copy_relay.h): a side is TLS in user space. Plaintext through two
//       buffers, ciphertext by the connection's transports.
//
// The relay sees the connection only as its record (core/connection.h): two transports,
// counters, the user's bandwidth cap, the idle deadline and finish().
#include <cstdint>
#include <memory>
#include <string>

#include "core/ops.h"

namespace up {

class Connection;
enum class Side : uint8_t;

class Relay {
 public:
  virtual ~Relay() = default;
  virtual void start() = 0;
  // A plaintext receive or send of the connection's transports completed (copy relay, and
  // the first bytes of either).
  virtual void on_recv(Side s, int res) = 0;
  virtual void on_sent(Side s) = 0;
  // A send through a transport failed with `err`: true if the relay carries on (a lost
  // datagram), false if the tunnel ends.
  virtual bool on_send_error(Side, int) { return false; }
  // One of the relay's own ring operations (up_in, up_out, down_in, down_out) completed.
  virtual void on_op(Op op, int res, uint32_t flags) = 0;
  // A pipe may be free again, or the user's bandwidth cap has room.
  virtual void retry() = 0;
  // The connection is finishing: pipes and buffers not held by an operation go back.
  virtual void release() = 0;
  // An operation that completed after finish(): what it held goes back.
  virtual void reclaim(Op op) = 0;
};

// Splice where both sides are plain, else copy. `to_target` are bytes the client sent behind
// its handshake, `to_client` bytes an upstream sent with its handshake reply: each goes first.
std::unique_ptr<Relay> make_relay(Connection& c, std::string to_target, std::string to_client);

// A socket error ends the tunnel: a reset is passed on as a reset, anything else as an error.
void end_tunnel_on_error(Connection& c, int err);

}  // namespace up
