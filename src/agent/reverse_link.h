#pragma once
// Agent mode: one link from this agent to its gateway (docs/agent-protocol.md), as the
// frontend of a Connection whose "client" is the gateway:
//
//   connecting (TCP, then TLS as a client) -> hello (HELLO out, AUTH_RESULT in) ->
//     control: answers PINGs; nothing heard for 3 heartbeats -> ERROR heartbeat_timeout, close
//     reverse: idle until TUNNEL -> the target is checked against the agent's ACL and dialled
//              as the proxy dials a direct route (DNS off the worker, ACL on every address,
//              source_address) -> STATUS -> the connection's relay carries the tunnel
//
// A reverse link that gets its TUNNEL opens its replacement at once. How each link ends is
// reported to the supervisor (agent/gateway_links.h); nothing here blocks.
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>

#include "frontend/frontend.h"
#include "proto/agent_frame.h"

namespace up {

struct GatewayLinks;
struct LinkIdentity;

class ReverseLink final : public Frontend {
 public:
  ReverseLink(Connection& c, GatewayLinks& links, bool control);
  void begin() override;  // TLS is up: HELLO
  void on_client_data(uint32_t new_bytes) override;
  void on_authenticated() override {}
  void answer_auth_failed() override {}
  void answer_dialed() override;                   // STATUS connected; the relay follows
  void answer_failure(const Failure& f) override;  // STATUS with the failure's code, close
  void on_timeout() override;
  void on_sent() override;
  void on_finish() override;

  bool control() const { return control_; }
  GatewayLinks& links() { return links_; }
  const LinkIdentity& identity() const { return *identity_; }
  uint64_t generation() const { return generation_; }
  sockaddr_storage& gateway_address() { return gateway_addr_; }  // while connecting
  // Where a worker keeps this kind of link's TLS session for resumption (Worker::tls_session,
  // under the identity's epoch): one per kind of link, as the two use different contexts and
  // protocol versions (agent_main.cpp).
  std::string_view session_key() const;

 private:
  enum class Step : uint8_t { connecting, hello, idle, tunnel };
  void frame(const agent::Message& m);
  void authenticated(const agent::AuthResult& a);
  void tunnel(const agent::Tunnel& t);
  void dial_tunnel();
  void send(const agent::Message& m);
  // ERROR out, then close.
  void refuse(agent::ErrorCode code, const char* text);
  bool current() const;  // of the live generation

  Connection& c_;
  GatewayLinks& links_;
  std::shared_ptr<const LinkIdentity> identity_;  // the one in force when this link opened
  bool control_;
  uint64_t generation_;
  Step step_ = Step::connecting;
  bool counted_idle_ = false;  // counted in reverse_idle
  bool counted_opening_ = false;
  bool dial_after_send_ = false;  // a TUNNEL came while a PONG was going out
  uint32_t heartbeat_ms_ = 0;
  uint64_t tunnel_id_ = 0;
  std::string sending_;  // one frame on the wire at a time
  std::string queued_;
  bool closing_ = false;
  sockaddr_storage gateway_addr_{};
};

}  // namespace up
