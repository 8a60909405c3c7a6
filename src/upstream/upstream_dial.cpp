// Routes: decide (route/route_selector), then dial directly or through an upstream proxy —
// TCP connect, TLS where the type has it, then the upstream's own handshake (SOCKS5 with
// RFC 1929 auth, or HTTP CONNECT with Basic auth). The target name goes to the upstream
// unresolved. A failed attempt marks the upstream down and tries the next one in the plan;
// when none is left, on_failure decides: reject (fail closed), direct, or another upstream.
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <string.h>

#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/worker.h"
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

void Connection::route_and_dial() {
  dial_started_us_ = monotonic_us();
  const Snapshot& s = w_.snapshot();
  const User* u = user_.empty() ? nullptr : s.find_user(user_);
  if (UserShared* q = u ? s.find_user_state(user_) : nullptr;
      q && q->over_quota.load(std::memory_order_relaxed))
    return fail({Result::over_quota, 0x02, 429});
  if (!limits_ && u) {
    // Counted once per client connection, across all workers.
    UserShared* shared = s.find_user_state(user_);
    UserLimits lim = effective_limits(*u, s.config.limits);
    uint32_t max = lim.max_connections;
    if (shared && shared->active.fetch_add(1, std::memory_order_relaxed) >= max && max) {
      shared->active.fetch_sub(1, std::memory_order_relaxed);
      return fail({Result::limited, 0x02, 429});
    }
    if (shared) {
      limits_ = shared;
      bandwidth_bps_ = lim.bandwidth_bps;
    }
  }
  const UserAcl* uacl = s.find_user_acl(user_);
  // A UDP association has no target yet: each datagram is judged as it comes. Neither has a
  // BIND naming any address: each peer is judged as it connects.
  Acl::Verdict verdict = Acl::Verdict::check_addresses;
  if (bind_ && !bind_names_any(target_)) {
    Target named = target_;
    named.port = 0;  // the peer's source port, not a service: deny_ports do not apply
    verdict = s.acl.check_target(named, uacl);
  } else if (!udp_ && !bind_) {
    verdict = s.acl.check_target(target_, uacl);
  }
  if (verdict == Acl::Verdict::deny) return fail({Result::denied, 0x02, 403});
  name_allowed_ = verdict == Acl::Verdict::allow && target_.kind == Target::Kind::domain;
  RoutePlan plan = plan_route(s, {user_, group_}, u, w_.cursors(), udp_ != nullptr);
  // An upstream resolves names itself: with allow lists, a name they do not list is refused.
  if (plan.kind == RoutePlan::Kind::upstream && verdict == Acl::Verdict::check_addresses &&
      !udp_ && !bind_ && s.acl.has_allow(uacl))
    return fail({Result::denied, 0x02, 403});
  switch (plan.kind) {
    case RoutePlan::Kind::refuse:
      refused_by_route_ = true;
      return fail({plan.socks_reply == 0x02   ? Result::denied
                   : plan.socks_reply == 0x07 ? Result::unsupported
                                              : Result::upstream_error,
                   plan.socks_reply, plan.http_status});
    case RoutePlan::Kind::direct:
      if (*plan.why)
        UP_WARN("user %s: %s: leaving directly", user_.c_str(), plan.why);
      upstream_.reset();
      return dial();
    case RoutePlan::Kind::upstream:
      upstream_ = std::make_unique<UpstreamSession>();
      upstream_->plan = std::move(plan);
      return dial_upstream();
  }
}

void Connection::dial_upstream() {
  state_ = State::dialing;
  set_deadline_in(w_.snapshot().config.upstream.connect_timeout_ms);
  const UpstreamProxy& cfg = upstream_->current()->config;
  // Only a plain SOCKS5 upstream relays UDP; the others fail closed (0x07) unless a later
  // attempt or on_failure says otherwise.
  if (udp_ && cfg.type != UpstreamType::socks5)
    return upstream_attempt_failed({Result::unsupported, 0x07, 400}, false, "cannot carry UDP");
  // BIND leaves directly only (an upstream would have to listen for us): fail closed.
  if (bind_)
    return upstream_attempt_failed({Result::unsupported, 0x07, 400}, false, "cannot carry BIND");
  // VLESS UDP leaves directly only (no upstream carries it yet): fail closed.
  if (datagram_)
    return upstream_attempt_failed({Result::unsupported, 0x07, 400}, false,
                                   "cannot carry VLESS UDP");
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
  w_.dns().resolve(cfg.address, this, w_.now_ms());
}

void Connection::upstream_connected() {
  const Upstream& u = *upstream_->current();
  if (!u.has_tls()) return upstream_handshake_step();
  upstream_->phase = UpstreamSession::Phase::tls;
  tls_ = std::make_unique<TlsIo>();
  const std::string& name =
      u.config.tls.server_name.empty() ? u.config.address : u.config.tls.server_name;
  if (!tls_->layer.start(u.tls.get(), name, w_.tls_session(u.config.id)))
    return upstream_attempt_failed({Result::error, 0x01, 502}, false, "TLS set-up failed");
  tls_handshake_step(Side::target);
}

// The upstream's own handshake (after TCP, and TLS where the type has it): starts it, then
// does what the machine asks next; the upstream's answers arrive in upstream_on_recv.
void Connection::upstream_handshake_step() {
  UpstreamSession& us = *upstream_;
  if (us.phase != UpstreamSession::Phase::handshake) {
    const UpstreamProxy& cfg = us.current()->config;
    bool socks = cfg.type == UpstreamType::socks5 || cfg.type == UpstreamType::socks5s;
    us.phase = UpstreamSession::Phase::handshake;
    if (udp_) {
      // Where we will send from is not known yet: all zeros (RFC 1928).
      Target any;
      set_host("0.0.0.0", any);
      us.handshake.emplace(UpstreamHandshake::Protocol::socks5, cfg.username, cfg.password, &any,
                           UpstreamHandshake::Request::udp_associate);
    } else {
      us.handshake.emplace(socks ? UpstreamHandshake::Protocol::socks5
                                 : UpstreamHandshake::Protocol::http,
                           cfg.username, cfg.password, &target_);
    }
  }
  UpstreamHandshake& hs = *us.handshake;
  switch (hs.step()) {
    case UpstreamHandshake::Step::send: {
      std::string_view out = hs.output();  // stays put until sent()
      return submit_send_target(out.data(), static_cast<uint32_t>(out.size()));
    }
    case UpstreamHandshake::Step::recv:
      return submit_recv_target(us.buf.get(), UpstreamSession::buf_cap);
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
      return upstream_attempt_failed(reply, true, f.why.c_str());
    case UpstreamHandshake::Failure::Fault::after_request:
      return upstream_attempt_failed(reply, false, f.why.c_str());
    case UpstreamHandshake::Failure::Fault::target:
      return fail(reply);  // passed on at once: it says nothing about the upstream's health
  }
}

void Connection::upstream_on_sent() {
  if (upstream_->agent) return agent_on_sent();
  upstream_->handshake->sent();
  upstream_handshake_step();
}

void Connection::upstream_on_recv(int res) {
  UpstreamSession& us = *upstream_;
  if (us.agent) return agent_on_recv(res);
  if (res <= 0)
    us.handshake->closed(res < 0);
  else
    us.handshake->received({us.buf.get(), static_cast<size_t>(res)});
  upstream_handshake_step();
}

void Connection::upstream_ready() {
  upstream_->phase = UpstreamSession::Phase::done;
  route_ = upstream_->current();
  if (!counted_active_) {
    route_->health->active.fetch_add(1, std::memory_order_relaxed);
    counted_active_ = true;
  }
  on_dialed();
}

void Connection::upstream_attempt_failed(const Failure& f, bool mark_down, const char* why) {
  const auto& u = upstream_->current();
  agent_waiting_ = false;
  upstream_->agent = false;
  // An agent's health is its control link (agent/agent_registry.h), not the fate of a tunnel.
  if (u->config.type == UpstreamType::agent) mark_down = false;
  if (mark_down && u->health->is_up()) {
    u->health->mark_down(w_.now_ms());
    UP_WARN("upstream %s (%s:%u) marked down: %s", u->config.id.c_str(),
            u->config.address.c_str(), u->config.port, why);
  }
  cancel_resolve();
  close_target();
  upstream_failure_ = f;
  // The next attempt reuses the target operations: wait until the old ones have completed.
  if (inflight_ & target_ops_mask) {
    retry_pending_ = true;
    return;
  }
  upstream_next_attempt();
}

void Connection::upstream_next_attempt() {
  retry_pending_ = false;
  tls_.reset();
  if (++upstream_->attempt < upstream_->plan.attempts.size()) return dial_upstream();
  RoutePlan next = plan_on_failure(w_.snapshot(), upstream_->plan.on_failure, group_);
  switch (next.kind) {
    case RoutePlan::Kind::direct:
      UP_WARN("user %s: upstream %s failed; on_failure direct: leaving directly",
              user_.c_str(), upstream_->current()->config.id.c_str());
      upstream_.reset();
      return dial();
    case RoutePlan::Kind::upstream:
      upstream_->plan = std::move(next);
      upstream_->attempt = 0;
      return dial_upstream();
    case RoutePlan::Kind::refuse:
      refused_by_route_ = true;
      return fail(upstream_failure_);
  }
}

}  // namespace up
