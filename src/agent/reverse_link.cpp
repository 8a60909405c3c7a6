// Agent mode: one link to the gateway (agent/reverse_link.h), as the frontend of its
// connection; the link's own TCP connect and TLS start are the connection's
// (core/agent_link.cpp).
#include "agent/reverse_link.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include "agent/gateway_links.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/tls_io.h"
#include "core/worker.h"
#include "route/snapshot.h"

namespace up {

namespace {

// A dial's failure in the protocol's terms: its SOCKS5 code, which STATUS codes are.
agent::Status status_for(uint8_t socks_reply) {
  switch (socks_reply) {
    case 0x02: case 0x03: case 0x04: case 0x05: case 0x06: case 0x08:
      return static_cast<agent::Status>(socks_reply);
    default:
      return agent::Status::general_failure;
  }
}

}  // namespace

// --- the frontend

ReverseLink::ReverseLink(Connection& c, GatewayLinks& links, bool control)
    : c_(c), links_(links), identity_(links.identity()), control_(control),
      generation_(links.generation.load(std::memory_order_acquire)) {
  // The opener counted a reverse link as opening before it posted it here.
  counted_opening_ = !control;
}

std::string_view ReverseLink::session_key() const {
  return control_ ? "agent-gateway" : "agent-gateway-reverse";
}

bool ReverseLink::current() const {
  return generation_ == links_.generation.load(std::memory_order_acquire);
}

void ReverseLink::begin() {
  step_ = Step::hello;
  c_.set_state(State::agent);
  c_.ensure_handshake_buffer(2 * agent::max_frame);
  agent::Hello h;
  h.role = control_ ? agent::Role::control : agent::Role::reverse;
  h.id = identity_->id;
  h.secret = identity_->secret;
  h.software = identity_->software;
  send(h);
  c_.submit_recv_client();
}

void ReverseLink::send(const agent::Message& m) {
  uint8_t buf[agent::max_frame];
  size_t n = agent::encode(m, buf);
  if (n == 0) return c_.finish(Result::error);
  if (!sending_.empty()) {
    queued_.append(reinterpret_cast<const char*>(buf), n);
    return;
  }
  sending_.assign(reinterpret_cast<const char*>(buf), n);
  c_.submit_send_client(sending_.data(), static_cast<uint32_t>(sending_.size()));
}

void ReverseLink::on_sent() {
  sending_.clear();
  if (!queued_.empty()) {
    sending_.swap(queued_);
    return c_.submit_send_client(sending_.data(), static_cast<uint32_t>(sending_.size()));
  }
  if (closing_) return c_.finish(Result::ok);
  if (dial_after_send_) {
    dial_after_send_ = false;
    dial_tunnel();
  }
}

void ReverseLink::refuse(agent::ErrorCode code, const char* text) {
  if (closing_) return;
  closing_ = true;
  c_.set_deadline_in(2000);  // a gateway that will not read its ERROR is not waited for
  send(agent::ErrorFrame{code, text});
}

void ReverseLink::on_client_data(uint32_t) {
  while (!closing_ && !c_.closed() && step_ != Step::tunnel) {
    agent::Message m;
    size_t used = 0;
    agent::Error err = agent::Error::none;
    std::string_view in = c_.handshake();
    agent::Parse r = agent::parse_message(
        {reinterpret_cast<const uint8_t*>(in.data()), in.size()}, m, used, err);
    if (r == agent::Parse::error) {
      UP_WARN("agent: gateway sent a malformed frame (%s); closing the link", agent::error_text(err));
      return refuse(agent::ErrorCode::protocol_error, agent::error_text(err));
    }
    if (r == agent::Parse::need_more) break;
    c_.consume_handshake(static_cast<uint32_t>(used));
    frame(m);
  }
  if (closing_ || c_.closed() || step_ == Step::tunnel) return;
  c_.read_more_handshake();
}

void ReverseLink::frame(const agent::Message& m) {
  if (heartbeat_ms_ && control_) c_.set_deadline_in(3 * heartbeat_ms_);
  if (const auto* e = std::get_if<agent::ErrorFrame>(&m)) {
    UP_WARN("agent: gateway closes the %s link: %s%s%s", control_ ? "control" : "reverse",
            agent::error_code_text(e->code), e->text.empty() ? "" : ": ", e->text.c_str());
    return c_.finish(Result::client_closed);
  }
  if (step_ == Step::hello) {
    if (const auto* a = std::get_if<agent::AuthResult>(&m)) return authenticated(*a);
    return refuse(agent::ErrorCode::unexpected_message, "AUTH_RESULT first");
  }
  if (const auto* p = std::get_if<agent::Ping>(&m)) return send(agent::Pong{p->nonce});
  if (std::holds_alternative<agent::Pong>(m)) return;
  if (const auto* t = std::get_if<agent::Tunnel>(&m); t && !control_) return tunnel(*t);
  refuse(agent::ErrorCode::unexpected_message, "not on this link now");
}

void ReverseLink::authenticated(const agent::AuthResult& a) {
  if (a.code != agent::AuthCode::ok) {
    if (a.code == agent::AuthCode::unsupported_version)
      UP_WARN("agent %s: refused by the gateway: unsupported_version (it speaks %u, we %u)",
              identity_->id.c_str(), a.version, agent::protocol_version);
    else if (control_ || a.code != agent::AuthCode::no_control)
      UP_WARN("agent %s: refused by the gateway: %s", identity_->id.c_str(),
              agent::auth_code_text(a.code));
    return c_.finish(Result::auth_failed);
  }
  if (a.version == 0 || a.version > agent::protocol_version)
    return refuse(agent::ErrorCode::protocol_error, "a version this agent did not offer");
  step_ = Step::idle;
  // Kept now, not when TLS completed: a TLS 1.3 server sends its session ticket after the
  // handshake, and it has been read by the time AUTH_RESULT is. The next link resumes.
  const TlsLayer& tls = c_.tls(Side::client)->layer;
  c_.worker().keep_tls_session(session_key(), tls.session(), identity_->epoch);
  if (!control_) {
    links_.reverse_handshakes.fetch_add(1, std::memory_order_relaxed);
    if (tls.resumed()) links_.reverse_resumed.fetch_add(1, std::memory_order_relaxed);
  } else {
    heartbeat_ms_ = a.heartbeat_ms;
    c_.set_deadline_in(3 * heartbeat_ms_);
    if (current()) {
      UP_INFO("agent %s: control link up to %s (heartbeat %u ms)", identity_->id.c_str(),
              format_client(c_.client_address()).c_str(), heartbeat_ms_);
      links_.control.store(GatewayLinks::up, std::memory_order_release);
      links_.notify();
    }
    return;
  }
  c_.set_deadline_in(0);  // idle until a tunnel: the control link watches the gateway
  counted_opening_ = false;
  links_.reverse_opening.fetch_sub(1, std::memory_order_relaxed);
  counted_idle_ = true;
  links_.reverse_idle.fetch_add(1, std::memory_order_relaxed);
  links_.notify();
}

void ReverseLink::tunnel(const agent::Tunnel& t) {
  step_ = Step::tunnel;
  tunnel_id_ = t.tunnel_id;
  c_.set_target(t.target);
  c_.set_user(std::string());  // a tunnel now, not an idle link: not closed with them
  if (counted_idle_) {
    counted_idle_ = false;
    links_.reverse_idle.fetch_sub(1, std::memory_order_relaxed);
  }
  links_.tunnels.fetch_add(1, std::memory_order_relaxed);
  // The pool stays at idle_connections: the replacement opens now, not on the supervisor's turn.
  if (current() && links_.control.load(std::memory_order_acquire) == GatewayLinks::up) {
    links_.reverse_opening.fetch_add(1, std::memory_order_relaxed);
    links_.open(false);
  }
  UP_INFO("tunnel %llu: to %s", static_cast<unsigned long long>(tunnel_id_),
          c_.target().to_string().c_str());
  if (!sending_.empty()) {  // a PONG on its way: STATUS must not overtake it
    dial_after_send_ = true;
    return;
  }
  dial_tunnel();
}

void ReverseLink::dial_tunnel() { c_.dial_direct(); }  // the agent's ACL applies there

void ReverseLink::answer_dialed() { send(agent::TunnelStatus{tunnel_id_, agent::Status::connected}); }

void ReverseLink::answer_failure(const Failure& f) {
  send(agent::TunnelStatus{tunnel_id_, status_for(f.socks_reply)});
}

void ReverseLink::on_timeout() {
  if (closing_) return c_.finish(Result::error);
  if (step_ == Step::hello) {
    UP_WARN("agent %s: the gateway did not answer HELLO in time", identity_->id.c_str());
    return c_.finish(Result::handshake_timeout);
  }
  UP_WARN("agent %s: nothing from the gateway for %u ms; closing the control link",
          identity_->id.c_str(), 3 * heartbeat_ms_);
  refuse(agent::ErrorCode::heartbeat_timeout, "no frame for 3 heartbeats");
}

void ReverseLink::on_finish() {
  if (tunnel_id_) {
    UP_INFO("tunnel %llu: %s: %s (%llu bytes up, %llu down, %llu ms)",
            static_cast<unsigned long long>(tunnel_id_), c_.target().to_string().c_str(),
            to_string(c_.result()), static_cast<unsigned long long>(c_.bytes_up()),
            static_cast<unsigned long long>(c_.bytes_down()),
            static_cast<unsigned long long>(c_.age_ms()));
    return;
  }
  if (control_) {
    if (current()) {
      // Up or connecting: either way the supervisor takes it from here.
      links_.control.store(GatewayLinks::down, std::memory_order_release);
      links_.notify();
    }
    return;
  }
  if (counted_opening_) {
    counted_opening_ = false;
    links_.reverse_opening.fetch_sub(1, std::memory_order_relaxed);
    links_.reverse_failures.fetch_add(1, std::memory_order_relaxed);
  }
  if (counted_idle_) {
    counted_idle_ = false;
    links_.reverse_idle.fetch_sub(1, std::memory_order_relaxed);
  }
  links_.notify();
}

}  // namespace up
