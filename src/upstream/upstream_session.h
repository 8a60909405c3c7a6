#pragma once
// State of a connection that leaves through an upstream proxy, while the route is being set
// up: which attempt this is, and the upstream protocol handshake (SOCKS5 client or HTTP
// CONNECT client) over the connection's target I/O (plain or TLS).
#include <cstdint>
#include <memory>
#include <string>

#include "core/tls_io.h"
#include "route/route_selector.h"

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
  Target relay;  // UDP ASSOCIATE: the relay address the upstream answered with

  const std::shared_ptr<const Upstream>& current() const { return plan.attempts[attempt]; }
};

}  // namespace up
