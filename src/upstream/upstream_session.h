#pragma once
// State of a connection that leaves through an upstream proxy, while the route is being set
// up: which attempt this is, and the upstream protocol handshake (SOCKS5 client or HTTP
// CONNECT client, proto/upstream_handshake.cpp, the machine the health probe drives too) over
// the connection's target I/O (plain or TLS).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/tls_io.h"
#include "route/route_selector.h"
#include "uringproxy/upstream_handshake.h"

namespace up {

struct UpstreamSession {
  enum class Phase : uint8_t { resolving, connecting, tls, handshake, done };

  RoutePlan plan;
  size_t attempt = 0;  // index into plan.attempts
  Phase phase = Phase::resolving;
  std::optional<UpstreamHandshake> handshake;  // this attempt's, from Phase::handshake on
  static constexpr uint32_t buf_cap = UpstreamHandshake::max_reply;
  // The ring reads the upstream's replies here (and, after a UDP ASSOCIATE, its control bytes).
  std::unique_ptr<char[]> buf{new char[buf_cap]};
  std::string leftover;  // tunnel bytes that arrived with the upstream's reply
  Target relay;  // UDP ASSOCIATE: the relay address the upstream answered with
  // Through a reverse agent: the TUNNEL frame out, the bytes of its STATUS in.
  bool agent = false;
  uint64_t tunnel_id = 0;
  uint8_t frame[520];
  std::string agent_in;

  const std::shared_ptr<const Upstream>& current() const { return plan.attempts[attempt]; }
};

}  // namespace up
