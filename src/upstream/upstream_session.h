#pragma once
// State of a connection that leaves through an upstream proxy, while the route is being set
// up: which attempt this is, and the upstream protocol handshake (SOCKS5 client or HTTP
// CONNECT client) over the connection's target I/O (plain or TLS).
#include <cstdint>
#include <memory>
#include <string>

#include "route/route_selector.h"
#include "upstream/tls_layer.h"

namespace up {

struct UpstreamSession {
  enum class Phase : uint8_t { resolving, connecting, tls, greeting, auth, request, done };

  RoutePlan plan;
  size_t attempt = 0;  // index into plan.attempts
  Phase phase = Phase::resolving;
  std::string out;                  // handshake bytes being sent
  static constexpr uint32_t buf_cap = 8192;
  std::unique_ptr<char[]> buf{new char[buf_cap]};  // handshake bytes received
  uint32_t len = 0;
  std::string leftover;  // tunnel bytes that arrived with the upstream's reply

  const std::shared_ptr<const Upstream>& current() const { return plan.attempts[attempt]; }
};

// Plaintext-over-ciphertext bookkeeping for a TLS target (see upstream/tls_io.cpp).
struct TlsIo {
  TlsLayer layer;
  static constexpr uint32_t buf_cap = 16 * 1024;
  std::unique_ptr<char[]> in{new char[buf_cap]};   // ciphertext from the socket
  std::unique_ptr<char[]> out{new char[buf_cap]};  // ciphertext to the socket
  uint32_t out_len = 0;
  uint32_t out_off = 0;
  bool sending = false;          // a ciphertext send is in flight
  bool recving = false;          // a ciphertext recv is in flight
  uint32_t upper_send = 0;       // plaintext bytes whose send completes once flushed
  char* upper_buf = nullptr;     // where a pending plaintext read goes
  uint32_t upper_cap = 0;
  bool handshaking = true;
};

}  // namespace up
