#pragma once
// The user-space relay, for tunnels with a TLS side (a TLS listener's client, or a socks5s or
// https upstream): one buffer per direction, recv -> send -> recv through the connection's
// transports (which encrypt and decrypt), so a slow reader holds back its writer.
#include <cstdint>
#include <string>

#include "core/growing_buffer.h"
#include "relay/relay.h"

namespace up {

class CopyRelay final : public Relay {
 public:
  CopyRelay(Connection& c, std::string to_target, std::string to_client);

  void start() override;
  void on_recv(Side s, int res) override;
  void on_sent(Side s) override;
  void on_op(Op, int, uint32_t) override {}  // all of its I/O goes through the transports
  void retry() override;
  void release() override {}  // its buffers live as long as the connection
  void reclaim(Op) override {}

 private:
  // The next read of one direction, as much as the user's bandwidth cap allows now.
  void read(bool up);

  Connection& c_;
  GrowingBuffer up_;    // client -> target
  GrowingBuffer down_;  // target -> client
  std::string to_target_;  // first bytes, sent before the direction starts
  std::string to_client_;
  bool up_done_ = false;
  bool down_done_ = false;
  bool up_throttled_ = false;  // waiting for the bandwidth cap
  bool down_throttled_ = false;
};

}  // namespace up
