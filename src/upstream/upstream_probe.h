#pragma once
// The handshake-level probe of an upstream (docs/configuration.md#external_proxyjson): TCP connect, TLS with verification
// where the type has it, then the upstream's own greeting and authentication (SOCKS5 method
// + RFC 1929; for http/https a CONNECT to the health-check target when one is set), spoken by
// the dialer's own state machine (uringproxy/upstream_handshake.h), so an upstream the probe
// passes is one the dialer accepts. Blocking, with a deadline: it runs on the health
// checker's thread, never on a worker.
#include <cstdint>
#include <string>

#include "route/snapshot.h"

namespace up {

// "" when the upstream passed; otherwise what failed, for the log and `proxy test`.
std::string probe_upstream(const Upstream& u, const std::string& target, uint32_t timeout_ms);

}  // namespace up
