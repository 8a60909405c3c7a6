#pragma once
// The gateway's side of an agent listener connection (docs/agent-protocol.md): HELLO, the
// secret checked off the worker as user passwords are (and throttled by the same guard), then
//   control: heartbeats for as long as the link is up; the agent is a group member meanwhile;
//   reverse: AUTH_RESULT out, then the connection (fd and TLS state) goes to the agent's idle
//            pool (agent/agent_registry.h) and this Connection ends without a log line.
// Frames are parsed by the pure proto/agent_frame; nothing here blocks.
#include <cstdint>
#include <string>

#include "frontend/frontend.h"
#include "proto/agent_frame.h"

namespace up {

enum class Result : uint8_t;

class AgentFrontend final : public Frontend {
 public:
  explicit AgentFrontend(Connection& c);
  void begin() override;
  void on_client_data(uint32_t new_bytes) override;
  void on_authenticated() override {}
  void answer_auth_failed() override;
  void answer_dialed() override {}
  void answer_failure(const Failure&) override {}
  void on_timeout() override;
  void on_sent() override;
  void on_finish() override;

  static uint32_t heartbeat_ms();  // URINGPROXY_AGENT_HEARTBEAT_MS, else 5000

 private:
  enum class Step : uint8_t { hello, verifying, reverse_answer, control };
  void hello(const agent::Hello& h);
  void verified(bool ok, const uint8_t* digest);
  void accepted();
  void control_frame(const agent::Message& m);
  void send(const agent::Message& m);
  // ERROR (or a refused AUTH_RESULT) and close once it is out.
  void refuse(const agent::Message& m, Result result);
  void check_link();

  Connection& c_;
  Step step_ = Step::hello;
  agent::Role role_ = agent::Role::control;
  std::string id_;
  std::string group_;
  std::string software_;
  uint64_t session_ = 0;
  uint64_t last_rx_ms_ = 0;
  uint64_t next_ping_ms_ = 0;
  uint64_t nonce_ = 0;
  // One frame on the wire at a time; the rest wait here.
  std::string sending_;
  std::string queued_;
  bool closing_ = false;
};

}  // namespace up
