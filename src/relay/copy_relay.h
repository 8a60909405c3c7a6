#pragma once
// The user-space relay, for tunnels with a TLS side (a TLS listener's client, or a socks5s or
// https upstream): one buffer per direction, recv -> send -> recv, so a slow reader holds back
// its writer.
#include <cstdint>
#include <memory>

namespace up {

struct CopyRelay {
  static constexpr uint32_t buf_cap = 16 * 1024;
  std::unique_ptr<char[]> up{new char[buf_cap]};    // client -> target
  std::unique_ptr<char[]> down{new char[buf_cap]};  // target -> client
  bool up_done = false;
  bool down_done = false;
  bool up_throttled = false;  // waiting for the bandwidth cap
  bool down_throttled = false;
};

}  // namespace up
