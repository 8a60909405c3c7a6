#pragma once
// The relay of a VLESS UDP tunnel (command 2): the client's stream carries datagrams, each a
// 2-byte big-endian length and then the payload (src/proto/vless.cpp parse_datagram); the
// target is a UDP socket connected to the one destination the header named. Up, each datagram
// parsed from the stream is sent on as one UDP datagram; down, each datagram received is
// written to the stream behind its length. One datagram in flight per direction; over the
// user's bandwidth cap a datagram is dropped and counted (reason limit), as for SOCKS5 UDP.
#include <cstdint>
#include <memory>
#include <string>

#include "relay/relay.h"

namespace up {

class DatagramRelay final : public Relay {
 public:
  DatagramRelay(Connection& c, std::string to_target);

  void start() override;
  void on_recv(Side s, int res) override;
  void on_sent(Side s) override;
  bool on_send_error(Side s, int err) override;
  void on_op(Op, int, uint32_t) override {}  // all of its I/O goes through the transports
  void retry() override {}                    // it never waits for the cap: it drops
  void release() override {}
  void reclaim(Op) override {}

 private:
  void pump_up();      // the next whole datagram in up_ goes out, else read more
  void read_down();

  // The largest datagram and its length prefix fit: a stream never stalls on a full buffer.
  static constexpr uint32_t buf_cap = 2 + 65535;
  Connection& c_;
  std::unique_ptr<uint8_t[]> up_{new uint8_t[buf_cap]};    // stream bytes from the client
  std::unique_ptr<uint8_t[]> down_{new uint8_t[buf_cap]};  // length prefix + datagram
  uint32_t up_len_ = 0;    // bytes in up_
  uint32_t up_off_ = 0;    // where the next datagram starts
  uint32_t up_sending_ = 0;  // payload bytes of the datagram being sent
};

}  // namespace up
