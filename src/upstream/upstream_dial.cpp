// Routes: decide (route/route_selector), then dial directly or through an upstream proxy —
// TCP connect, TLS where the type has it, then the upstream's own handshake (SOCKS5 with
// RFC 1929 auth, or HTTP CONNECT with Basic auth). The target name goes to the upstream
// unresolved. A failed attempt marks the upstream down and tries the next one in the plan;
// when none is left, on_failure decides: reject (fail closed), direct, or another upstream.
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "core/worker.h"
#include "upstream/dialer.h"
#include "upstream/peer_address.h"
#include "upstream/upstream_session.h"

namespace up {

namespace {

// The access-log result for what the client is answered: the REP already says it.
Result result_for_reply(uint8_t socks_reply) {
  switch (socks_reply) {
    case 0x02: return Result::denied;
    case 0x03: return Result::unreachable;
    case 0x04: return Result::dns_failed;
    case 0x05: return Result::refused;
    case 0x06: return Result::timeout;
    default: return Result::upstream_error;
  }
}

}  // namespace

bool Dialer::allowed_by_name(Acl::Verdict v) {
  if (v == Acl::Verdict::deny) {
    c_.fail({Result::denied, 0x02, 403});
    return false;
  }
  name_allowed_ = v == Acl::Verdict::allow && c_.target().kind == Target::Kind::domain;
  return true;
}

void Dialer::route() {
  Worker& w = c_.worker();
  const Snapshot& s = w.snapshot();
  const std::string& user = c_.user();
  const Target& target = c_.target();
  const UserAcl* uacl = s.find_user_acl(user);
  // A UDP association has no target yet: each datagram is judged as it comes. Neither has a
  // BIND naming any address: each peer is judged as it connects.
  Acl::Verdict verdict = Acl::Verdict::check_addresses;
  if (kind_ == Kind::bind && !bind_names_any(target)) {
    Target named = target;
    named.port = 0;  // the peer's source port, not a service: deny_ports do not apply
    verdict = s.acl.check_target(named, uacl);
  } else if (kind_ == Kind::tunnel || kind_ == Kind::datagram) {
    verdict = s.acl.check_target(target, uacl);
  }
  if (!allowed_by_name(verdict)) return;
  const User* u = user.empty() ? nullptr : s.find_user(user);
  RoutePlan plan = plan_route(s, {user, c_.group()}, u, w.cursors(), kind_ == Kind::udp);
  // An upstream resolves names itself: with allow lists, a name they do not list is refused.
  if (plan.kind == RoutePlan::Kind::upstream && verdict == Acl::Verdict::check_addresses &&
      (kind_ == Kind::tunnel || kind_ == Kind::datagram) && s.acl.has_allow(uacl))
    return c_.fail({Result::denied, 0x02, 403});
  switch (plan.kind) {
    case RoutePlan::Kind::refuse:
      refused_ = true;
      return c_.fail({plan.socks_reply == 0x02   ? Result::denied
                      : plan.socks_reply == 0x07 ? Result::unsupported
                                                 : Result::upstream_error,
                      plan.socks_reply, plan.http_status});
    case RoutePlan::Kind::direct:
      if (*plan.why) UP_WARN("user %s: %s: leaving directly", user.c_str(), plan.why);
      return dial();
    case RoutePlan::Kind::upstream:
      return start_upstream(std::move(plan));
  }
}

void Dialer::start_upstream(RoutePlan&& plan) {
  upstream_ = std::make_unique<UpstreamSession>();
  upstream_->plan = std::move(plan);
  dial_upstream();
}

void Dialer::dial_upstream() {
  Worker& w = c_.worker();
  c_.set_deadline_in(w.snapshot().config.upstream.connect_timeout_ms);
  const UpstreamProxy& cfg = upstream_->current()->config;
  // Only a plain SOCKS5 upstream relays UDP; the others fail closed (0x07) unless a later
  // attempt or on_failure says otherwise.
  if (kind_ == Kind::udp && cfg.type != UpstreamType::socks5)
    return attempt_failed({Result::unsupported, 0x07, 400}, false, "cannot carry UDP");
  // BIND leaves directly only (an upstream would have to listen for us): fail closed.
  if (kind_ == Kind::bind)
    return attempt_failed({Result::unsupported, 0x07, 400}, false, "cannot carry BIND");
  // VLESS UDP leaves directly only (no upstream carries it yet): fail closed.
  if (kind_ == Kind::datagram)
    return attempt_failed({Result::unsupported, 0x07, 400}, false, "cannot carry VLESS UDP");
  if (cfg.type == UpstreamType::agent) return agent_dial();
  upstream_->phase = UpstreamSession::Phase::resolving;
  upstream_->handshake.reset();
  upstream_->leftover.clear();
  addrs_.clear();
  next_addr_ = 0;
  last_connect_errno_ = 0;
  Target where;
  if (set_host(cfg.address, where) && where.is_literal()) {
    ResolvedAddress a{};
    a.len = where.to_sockaddr(a.addr);
    return on_resolved(ARES_SUCCESS, {a});
  }
  resolving_ = true;
  w.dns().resolve(cfg.address, this, w.now_ms());
}

void Dialer::upstream_connected() {
  const Upstream& u = *upstream_->current();
  if (!u.has_tls()) return upstream_handshake_step();
  upstream_->phase = UpstreamSession::Phase::tls;
  auto tls = std::make_unique<TlsIo>();
  const std::string& name =
      u.config.tls.server_name.empty() ? u.config.address : u.config.tls.server_name;
  if (!tls->layer.start(u.tls.get(), name, c_.worker().tls_session(u.config.id)))
    return attempt_failed({Result::error, 0x01, 502}, false, "TLS set-up failed");
  c_.set_target_tls(std::move(tls));
  c_.tls_handshake(Side::target);  // -> on_tls_done / on_tls_failed
}

void Dialer::on_tls_done() { upstream_handshake_step(); }

void Dialer::on_tls_failed(const char* why) {
  attempt_failed({Result::upstream_error, 0x01, 502}, true, why);
}

// The upstream's own handshake (after TCP, and TLS where the type has it): starts it, then
// does what the machine asks next; the upstream's answers arrive in on_target_recv.
void Dialer::upstream_handshake_step() {
  UpstreamSession& us = *upstream_;
  if (us.phase != UpstreamSession::Phase::handshake) {
    const UpstreamProxy& cfg = us.current()->config;
    bool socks = cfg.type == UpstreamType::socks5 || cfg.type == UpstreamType::socks5s;
    us.phase = UpstreamSession::Phase::handshake;
    if (kind_ == Kind::udp) {
      // Where we will send from is not known yet: all zeros (RFC 1928).
      Target any;
      set_host("0.0.0.0", any);
      us.handshake.emplace(UpstreamHandshake::Protocol::socks5, cfg.username, cfg.password, &any,
                           UpstreamHandshake::Request::udp_associate);
    } else {
      us.handshake.emplace(socks ? UpstreamHandshake::Protocol::socks5
                                 : UpstreamHandshake::Protocol::http,
                           cfg.username, cfg.password, &c_.target());
    }
  }
  UpstreamHandshake& hs = *us.handshake;
  switch (hs.step()) {
    case UpstreamHandshake::Step::send: {
      std::string_view out = hs.output();  // stays put until sent()
      return c_.submit_send(Side::target, out.data(), static_cast<uint32_t>(out.size()));
    }
    case UpstreamHandshake::Step::recv:
      return c_.submit_recv(Side::target, us.buf.get(), UpstreamSession::buf_cap);
    case UpstreamHandshake::Step::done:
      us.leftover.assign(hs.leftover());
      us.relay = hs.bound();
      return upstream_ready();
    case UpstreamHandshake::Step::failed:
      break;
  }
  const UpstreamHandshake::Failure& f = hs.failure();
  Failure reply{result_for_reply(f.socks_reply), f.socks_reply, f.http_status};
  switch (f.fault) {
    case UpstreamHandshake::Failure::Fault::upstream:
      return attempt_failed(reply, true, f.why.c_str());
    case UpstreamHandshake::Failure::Fault::after_request:
      return attempt_failed(reply, false, f.why.c_str());
    case UpstreamHandshake::Failure::Fault::target:
      return c_.fail(reply);  // passed on at once: it says nothing about the upstream's health
  }
}

void Dialer::on_target_sent() {
  if (!upstream_) return;
  if (upstream_->agent) return agent_on_sent();
  upstream_->handshake->sent();
  upstream_handshake_step();
}

void Dialer::on_target_recv(int res) {
  if (!upstream_) return;
  UpstreamSession& us = *upstream_;
  if (us.agent) return agent_on_recv(res);
  if (res <= 0)
    us.handshake->closed(res < 0);
  else
    us.handshake->received({us.buf.get(), static_cast<size_t>(res)});
  upstream_handshake_step();
}

void Dialer::on_target_send_failed() {
  if (!upstream_) return c_.finish(Result::error);
  attempt_failed({Result::upstream_error, 0x01, 502}, true, "send failed during its handshake");
}

void Dialer::on_timeout() {
  if (!upstream_) return c_.fail({Result::timeout, 0x06, 504});
  if (retry_pending_) return;  // waiting for the old attempt's operations; they were cancelled
  attempt_failed({Result::timeout, 0x06, 504}, true, "timed out");
}

void Dialer::upstream_ready() {
  upstream_->phase = UpstreamSession::Phase::done;
  c_.use_route(upstream_->current());
  dialed();
}

void Dialer::attempt_failed(const Failure& f, bool mark_down, const char* why) {
  const auto& u = upstream_->current();
  set_agent_waiting(false);
  upstream_->agent = false;
  // An agent's health is its control link (agent/agent_registry.h), not the fate of a tunnel.
  if (u->config.type == UpstreamType::agent) mark_down = false;
  if (mark_down && u->health->is_up()) {
    u->health->mark_down(c_.worker().now_ms());
    UP_WARN("upstream %s (%s:%u) marked down: %s", u->config.id.c_str(),
            u->config.address.c_str(), u->config.port, why);
  }
  cancel_resolve();
  c_.close_target();
  upstream_failure_ = f;
  // The next attempt reuses the target operations: wait until the old ones have completed.
  if (c_.target_ops_in_flight()) {
    retry_pending_ = true;
    return;
  }
  next_attempt();
}

void Dialer::on_target_ops_drained() { next_attempt(); }

void Dialer::next_attempt() {
  retry_pending_ = false;
  c_.set_target_tls(nullptr);
  if (++upstream_->attempt < upstream_->plan.attempts.size()) return dial_upstream();
  RoutePlan next = plan_on_failure(c_.worker().snapshot(), upstream_->plan.on_failure, c_.group());
  switch (next.kind) {
    case RoutePlan::Kind::direct:
      UP_WARN("user %s: upstream %s failed; on_failure direct: leaving directly",
              c_.user().c_str(), upstream_->current()->config.id.c_str());
      upstream_.reset();
      return dial();
    case RoutePlan::Kind::upstream:
      upstream_->plan = std::move(next);
      upstream_->attempt = 0;
      return dial_upstream();
    case RoutePlan::Kind::refuse:
      refused_ = true;
      return c_.fail(upstream_failure_);
  }
}

std::string Dialer::take_leftover() {
  return upstream_ ? std::move(upstream_->leftover) : std::string();
}

}  // namespace up
