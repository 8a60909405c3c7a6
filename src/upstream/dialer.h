#pragma once
// The dialer phase: from a request the frontend has accepted to a ready target transport.
// It decides the route (route/route_selector), then dials directly (direct_dial.cpp: resolve,
// ACL every address, connect), through an upstream proxy (upstream_dial.cpp: TCP, TLS where the
// type has it, the upstream's own handshake, failover to the next attempt and on_failure),
// through a reverse agent (agent_dial.cpp) or, for SOCKS5 BIND, listens for the peer
// (bind_dial.cpp). It works on the connection's record only (core/connection.h: the target
// transport, the deadline, the route) and ends by calling Connection::dialed or
// Connection::fail; the connection drops it once the relay starts, so an open tunnel holds
// nothing of it.
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/connection.h"
#include "route/acl.h"
#include "upstream/dns_resolver.h"

namespace up {

struct UpstreamSession;
struct RoutePlan;

class Dialer final : private DnsWaiter {
 public:
  // What the client asked for: a TCP tunnel, a SOCKS5 UDP association (its relay socket is
  // the connection's UdpAssociation), a SOCKS5 BIND, or VLESS UDP (a connected UDP socket).
  enum class Kind : uint8_t { tunnel, udp, bind, datagram };

  Dialer(Connection& c, Kind kind);
  ~Dialer();

  void route();  // the user's ACL and route, then dial; the connection admitted the user
  // Agent mode: the gateway's TUNNEL, dialled directly after the agent's own ACL (by name here,
  // then every address the name resolves to), so a name pointing into its LAN is refused too.
  void direct();

  // Events while dialing, routed here by the connection.
  void on_connect(int res);
  void on_target_sent();
  void on_target_recv(int res);
  void on_target_send_failed();
  void on_tls_done();
  void on_tls_failed(const char* why);
  void on_timeout();
  void on_bind_accept(int res);  // in any state: a peer accepted too late is closed
  void on_bind_hangup(int res);
  // A failed upstream attempt waits for its old target operations before the next one.
  bool retry_pending() const { return retry_pending_; }
  void on_target_ops_drained();
  // An agent route waits for one of the agent's idle connections; retried each tick.
  bool waiting() const { return agent_waiting_; }
  void retry();
  void cancel_resolve();  // a DNS lookup in flight, if any

  // The upstream route being (or last) set up; null on a direct route.
  const UpstreamSession* upstream() const { return upstream_.get(); }
  UpstreamSession* upstream() { return upstream_.get(); }
  bool refused() const { return refused_; }  // the route said reject
  std::string take_leftover();  // tunnel bytes that came with the upstream's reply

 private:
  // direct_dial.cpp
  void dial();
  void on_resolved(int status, const std::vector<ResolvedAddress>& addrs) override;
  void connect_next();
  void dialed();
  // upstream_dial.cpp
  bool allowed_by_name(Acl::Verdict v);  // false: refused (the client has its answer)
  void start_upstream(RoutePlan&& plan);
  void dial_upstream();
  void upstream_connected();
  void upstream_handshake_step();
  void attempt_failed(const Failure& f, bool mark_down, const char* why);
  void next_attempt();
  void upstream_ready();
  // agent_dial.cpp
  void agent_dial();
  void agent_on_sent();
  void agent_on_recv(int res);
  void set_agent_waiting(bool on);  // counted in the registry while on
  // bind_dial.cpp
  void bind_listen();
  void bind_arm_accept();

  Connection& c_;
  Kind kind_;
  bool resolving_ = false;
  bool name_allowed_ = false;  // the ACL allowed the target by name
  bool refused_ = false;
  bool retry_pending_ = false;
  bool agent_waiting_ = false;
  uint8_t next_addr_ = 0;
  int last_connect_errno_ = 0;
  uint64_t started_us_ = 0;
  std::vector<ResolvedAddress> addrs_;
  sockaddr_storage addr_{};  // the address being connected to; a BIND's peer
  socklen_t bind_peer_len_ = 0;
  std::unique_ptr<UpstreamSession> upstream_;
  Failure upstream_failure_{Result::upstream_error, 0x01, 502};
};

}  // namespace up
