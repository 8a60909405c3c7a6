#pragma once
// What one worker counts. Only that worker writes it, with no locks and no atomics on the data
// path; the management thread gets a copy by asking the worker (its mailbox) and sums them.
#include <array>
#include <cstdint>
#include <string>

#include "route/snapshot.h"

namespace up {

struct UserTally {
  uint64_t connections_total = 0;
  uint64_t connections_active = 0;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
};

// A latency histogram in microseconds, exported in seconds (Prometheus histogram).
struct Histogram {
  static constexpr std::array<uint64_t, 13> bounds_us = {
      1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
      10000000};
  std::array<uint64_t, bounds_us.size() + 1> buckets{};  // last: +Inf
  uint64_t sum_us = 0;
  uint64_t count = 0;

  void observe(uint64_t us) {
    size_t i = 0;
    while (i < bounds_us.size() && us > bounds_us[i]) ++i;
    ++buckets[i];
    sum_us += us;
    ++count;
  }
  void merge(const Histogram& o) {
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
    sum_us += o.sum_us;
    count += o.count;
  }
};

// Why the UDP relay dropped a datagram (uringproxy_udp_dropped_total{reason}).
enum class UdpDrop : uint8_t {
  acl,             // the ACL refuses the destination
  frag,            // FRAG != 0 (no reassembly)
  foreign_source,  // not from the association's client, nor from a peer it sent to
  limit,           // over the user's bandwidth cap, or too many datagrams waiting
  malformed,       // shorter than its header, unknown ATYP, bad name, larger than a buffer
  dns,             // the destination name did not resolve
  error,           // the send failed (e.g. the destination's family is unreachable)
  overflow,        // the relay socket's receive queue was full: the kernel dropped it
  count
};
inline const char* to_string(UdpDrop d) {
  static const char* const names[] = {"acl", "frag", "foreign_source", "limit",
                                      "malformed", "dns", "error", "overflow"};
  return names[static_cast<int>(d)];
}

struct WorkerStats {
  uint64_t connections_total = 0;
  uint64_t connections_active = 0;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  uint64_t auth_failures = 0;
  StringMap<uint64_t> accepted;  // "listener\tprotocol" -> connections
  StringMap<UserTally> users;
  StringMap<uint64_t> routes;    // route name -> connections
  Histogram connect;             // route decision to a usable target
  StringMap<uint64_t> tls_handshakes;  // "listener\tresult" -> TLS listener handshakes
  Histogram tls_handshake;       // accept to a finished TLS handshake
  uint64_t udp_associations_active = 0;
  uint64_t udp_datagrams_up = 0;    // client to target
  uint64_t udp_datagrams_down = 0;  // target to client
  std::array<uint64_t, static_cast<size_t>(UdpDrop::count)> udp_dropped{};

  void observe_connect(uint64_t us) { connect.observe(us); }

  void merge(const WorkerStats& o) {
    connections_total += o.connections_total;
    connections_active += o.connections_active;
    bytes_up += o.bytes_up;
    bytes_down += o.bytes_down;
    auth_failures += o.auth_failures;
    for (const auto& [k, v] : o.accepted) accepted[k] += v;
    for (const auto& [k, v] : o.users) {
      UserTally& t = users[k];
      t.connections_total += v.connections_total;
      t.connections_active += v.connections_active;
      t.bytes_up += v.bytes_up;
      t.bytes_down += v.bytes_down;
    }
    for (const auto& [k, v] : o.routes) routes[k] += v;
    connect.merge(o.connect);
    for (const auto& [k, v] : o.tls_handshakes) tls_handshakes[k] += v;
    tls_handshake.merge(o.tls_handshake);
    udp_associations_active += o.udp_associations_active;
    udp_datagrams_up += o.udp_datagrams_up;
    udp_datagrams_down += o.udp_datagrams_down;
    for (size_t i = 0; i < udp_dropped.size(); ++i) udp_dropped[i] += o.udp_dropped[i];
  }
};

// One live tunnel, as `uringproxyctl connections` shows it.
struct ConnectionInfo {
  std::string user;
  std::string group;
  std::string client;
  std::string target;
  std::string route;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  uint64_t age_s = 0;
};

}  // namespace up
