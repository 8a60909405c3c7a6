#include "agent/agent_frontend.h"

#include <cstdlib>

#include "agent/agent_registry.h"
#include "auth/auth_guard.h"
#include "auth/credential_cache.h"
#include "auth/password_verifier.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/worker.h"

namespace up {

namespace {
constexpr uint32_t link_check_ms = 250;  // kicks, removals and replacements act within this
// Room for a frame and the start of the next: a peer cannot make us buffer more.
constexpr uint32_t agent_buffer = 2 * agent::max_frame;

// Agents are cached beside users in the worker's credential cache; the prefix keeps the two
// name spaces apart (a user name has no control characters).
std::string cache_key(const std::string& id) { return "\x01" "agent:" + id; }
}  // namespace

AgentFrontend::AgentFrontend(Connection& c) : c_(c) { c_.set_agent_link(); }

uint32_t AgentFrontend::heartbeat_ms() {
  static const uint32_t ms = [] {
    const char* v = getenv("URINGPROXY_AGENT_HEARTBEAT_MS");
    unsigned long n = v ? strtoul(v, nullptr, 10) : 0;
    if (n >= agent::min_heartbeat_ms && n <= agent::max_heartbeat_ms) return static_cast<uint32_t>(n);
    return uint32_t{5000};
  }();
  return ms;
}

void AgentFrontend::begin() {
  c_.ensure_handshake_buffer(agent_buffer);
  c_.submit_recv_client();
}

void AgentFrontend::on_client_data(uint32_t) {
  while (!closing_ && !c_.closed()) {
    agent::Message m;
    size_t used = 0;
    agent::Error err = agent::Error::none;
    std::string_view in = c_.handshake();
    agent::Parse r = agent::parse_message(
        {reinterpret_cast<const uint8_t*>(in.data()), in.size()}, m, used, err);
    if (r == agent::Parse::error)
      return refuse(agent::ErrorFrame{agent::ErrorCode::protocol_error, agent::error_text(err)},
                    Result::bad_request);
    if (r == agent::Parse::need_more) break;
    c_.consume_handshake(static_cast<uint32_t>(used));
    last_rx_ms_ = c_.worker().now_ms();
    if (step_ == Step::hello) {
      if (auto* h = std::get_if<agent::Hello>(&m)) return hello(*h);  // reads on once answered
      return refuse(agent::ErrorFrame{agent::ErrorCode::unexpected_message, "HELLO first"},
                    Result::bad_request);
    }
    if (step_ != Step::control)
      return refuse(agent::ErrorFrame{agent::ErrorCode::unexpected_message, "not now"},
                    Result::bad_request);
    control_frame(m);
  }
  if (closing_ || c_.closed()) return;
  c_.read_more_handshake();
}

void AgentFrontend::hello(const agent::Hello& h) {
  Worker& w = c_.worker();
  const Snapshot& snap = w.snapshot();
  role_ = h.role;
  id_ = h.id;
  software_ = h.software;
  if (w.runtime().auth_guard->blocked(c_.client_key(), w.now_ms())) {
    w.runtime().auth_blocked.fetch_add(1, std::memory_order_relaxed);
    return refuse(agent::AuthResult{agent::AuthCode::throttled, agent::protocol_version, 0},
                  Result::auth_failed);
  }
  const AgentEntry* e = snap.find_agent(id_);
  std::string hash = (e && e->config.enabled) ? e->config.secret_hash : std::string();
  CredentialDigest digest{};
  if (!hash.empty()) {
    digest = CredentialCache::digest(cache_key(id_), h.secret, hash);
    if (w.credentials().contains(cache_key(id_), digest)) return accepted();
  }
  // Unknown, disabled and wrong secret cost the same crypt(3) run and get the same answer.
  step_ = Step::verifying;
  c_.set_state(State::verifying);
  c_.async_started();
  Worker* wp = &w;
  Connection* self = &c_;
  AgentFrontend* fe = this;
  w.runtime().verifier->submit(h.secret, std::move(hash), [wp, self, fe, digest](bool ok) {
    wp->mailbox().post([wp, self, fe, digest, ok] {
      self->async_done();
      if (!self->closed()) fe->verified(ok, digest.data());
      if (self->can_free()) wp->release(self);
    });
  });
}

void AgentFrontend::verified(bool ok, const uint8_t* digest) {
  c_.set_state(State::handshake);
  step_ = Step::hello;
  if (!ok) return c_.on_auth_failed();  // throttled like user logins; answer_auth_failed
  CredentialDigest d;
  std::copy(digest, digest + d.size(), d.begin());
  c_.worker().credentials().insert(cache_key(id_), d);
  accepted();
}

void AgentFrontend::answer_auth_failed() {
  refuse(agent::AuthResult{agent::AuthCode::denied, agent::protocol_version, 0},
         Result::auth_failed);
}

void AgentFrontend::accepted() {
  Worker& w = c_.worker();
  AgentRegistry& reg = *w.runtime().agents;
  const AgentEntry* e = w.snapshot().find_agent(id_);
  if (!e || !e->config.enabled) return answer_auth_failed();  // removed while it was checked
  group_ = e->config.group;
  uint32_t hb = heartbeat_ms();
  if (role_ == agent::Role::reverse) {
    session_ = reg.current(id_);
    if (session_ == 0)
      return refuse(agent::AuthResult{agent::AuthCode::no_control, agent::protocol_version, 0},
                    Result::refused);
    step_ = Step::reverse_answer;
    c_.set_state(State::agent);
    return send(agent::AuthResult{agent::AuthCode::ok, agent::protocol_version, hb});
  }
  std::string address = format_client(c_.client_address());
  session_ = reg.connect(id_, group_, address, software_, e->member->health);
  UP_INFO("agent %s (%s) connected from %s, group %s", id_.c_str(), software_.c_str(),
          address.c_str(), group_.c_str());
  step_ = Step::control;
  c_.set_state(State::agent);
  last_rx_ms_ = w.now_ms();
  next_ping_ms_ = last_rx_ms_ + hb;
  send(agent::AuthResult{agent::AuthCode::ok, agent::protocol_version, hb});
  c_.set_deadline_in(link_check_ms);
  c_.next_handshake_message();
}

void AgentFrontend::control_frame(const agent::Message& m) {
  switch (agent::type_of(m)) {
    case agent::Type::ping:
      return send(agent::Pong{std::get<agent::Ping>(m).nonce});
    case agent::Type::pong:
      return;  // last_rx_ms_ is all it is for
    case agent::Type::error: {
      const auto& e = std::get<agent::ErrorFrame>(m);
      UP_INFO("agent %s closes its link: %s %s", id_.c_str(), agent::error_code_text(e.code),
              e.text.c_str());
      return c_.finish(Result::client_closed);
    }
    default:
      return refuse(agent::ErrorFrame{agent::ErrorCode::unexpected_message,
                                      "only PING, PONG and ERROR on a control link"},
                    Result::bad_request);
  }
}

void AgentFrontend::send(const agent::Message& m) {
  uint8_t frame[agent::max_frame];
  size_t n = agent::encode(m, frame);
  if (n == 0) return c_.finish(Result::error);
  if (!sending_.empty()) {
    queued_.append(reinterpret_cast<const char*>(frame), n);
    return;
  }
  sending_.assign(reinterpret_cast<const char*>(frame), n);
  c_.submit_send_client(sending_.data(), static_cast<uint32_t>(sending_.size()));
}

void AgentFrontend::refuse(const agent::Message& m, Result result) {
  if (closing_) return;
  closing_ = true;
  if (role_ == agent::Role::control && session_)
    c_.worker().runtime().agents->disconnect(id_, session_);
  // The frame goes out after whatever is being sent; the connection ends when a send completes.
  send(m);
  c_.fail_after_reply(result);
  c_.set_deadline_in(2000);  // a peer that will not read is not waited for
}

void AgentFrontend::on_sent() {
  sending_.clear();
  if (step_ == Step::reverse_answer) {
    // AUTH_RESULT is out and nothing else is in flight: the connection, as it is (fd and TLS
    // state), goes to the agent's idle pool, and this record ends without a log line.
    if (!c_.nothing_in_flight() || !c_.handshake().empty())
      return refuse(agent::ErrorFrame{agent::ErrorCode::unexpected_message,
                                      "nothing before a TUNNEL on a reverse connection"},
                    Result::bad_request);
    IdleReverse r;
    r.fd = c_.release_client(r.tls);
    Runtime& rt = c_.worker().runtime();
    if (!rt.agents->add_idle(id_, session_, std::move(r))) {
      close(r.fd);  // its session ended meanwhile
      r.tls.reset();
    } else if (rt.agents->anyone_waiting()) {
      // A tunnel on some worker may be waiting for this very connection.
      for (auto& w : rt.workers) w->mailbox().post([wp = w.get()] { wp->retry_pipe_waiters(); });
    }
    return c_.finish(Result::ok);
  }
  if (!queued_.empty()) {
    sending_.swap(queued_);
    c_.submit_send_client(sending_.data(), static_cast<uint32_t>(sending_.size()));
  }
}

void AgentFrontend::on_timeout() {
  if (step_ != Step::control) return c_.finish(Result::handshake_timeout);
  check_link();
}

void AgentFrontend::check_link() {
  Worker& w = c_.worker();
  AgentRegistry& reg = *w.runtime().agents;
  uint64_t now = w.now_ms();
  if (w.runtime().stopping.load(std::memory_order_acquire))
    return refuse(agent::ErrorFrame{agent::ErrorCode::shutting_down, "gateway stopping"},
                  Result::shutdown);
  const AgentEntry* e = w.snapshot().find_agent(id_);
  if (!e || !e->config.enabled) {
    UP_INFO("agent %s removed or disabled: closing its link", id_.c_str());
    return refuse(agent::ErrorFrame{agent::ErrorCode::removed, "agent removed or disabled"},
                  Result::kicked);
  }
  uint64_t current = reg.current(id_);
  if (current != session_) {
    bool replaced = current != 0;
    session_ = 0;  // not ours to end any more
    UP_INFO("agent %s: link %s", id_.c_str(), replaced ? "replaced by a newer one" : "kicked");
    return refuse(agent::ErrorFrame{replaced ? agent::ErrorCode::replaced
                                             : agent::ErrorCode::removed,
                                    replaced ? "another control link authenticated" : "kicked"},
                  Result::kicked);
  }
  uint32_t hb = heartbeat_ms();
  if (now - last_rx_ms_ > 3ull * hb) {
    UP_WARN("agent %s: no frame for %llu ms: heartbeat lost", id_.c_str(),
            static_cast<unsigned long long>(now - last_rx_ms_));
    return refuse(agent::ErrorFrame{agent::ErrorCode::heartbeat_timeout, "no PONG"},
                  Result::idle_timeout);
  }
  if (now >= next_ping_ms_) {
    send(agent::Ping{++nonce_});
    next_ping_ms_ = now + hb;
  }
  c_.set_deadline_in(link_check_ms);
}

void AgentFrontend::on_finish() {
  if (role_ != agent::Role::control || session_ == 0) return;
  c_.worker().runtime().agents->disconnect(id_, session_);
  UP_INFO("agent %s disconnected", id_.c_str());
  session_ = 0;
}

}  // namespace up
