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
#include "upstream/upstream_session.h"
#include "uringproxy/http.h"
#include "uringproxy/socks5.h"

namespace up {

namespace {

// An upstream's SOCKS5 refusal of the target is passed on as it came; it says nothing about
// the upstream's health.
Failure failure_for_socks_reply(socks5::Reply r) {
  switch (r) {
    case socks5::Reply::not_allowed: return {Result::denied, 0x02, 403};
    case socks5::Reply::net_unreachable: return {Result::unreachable, 0x03, 502};
    case socks5::Reply::host_unreachable: return {Result::dns_failed, 0x04, 502};
    case socks5::Reply::refused: return {Result::refused, 0x05, 502};
    case socks5::Reply::timeout: return {Result::timeout, 0x06, 504};
    default: return {Result::upstream_error, 0x01, 502};
  }
}

Failure failure_for_http_status(int status) {
  if (status == 504) return {Result::timeout, 0x06, 504};
  if (status == 403) return {Result::denied, 0x02, 502};
  if (status >= 500) return {Result::refused, 0x05, 502};
  return {Result::upstream_error, 0x01, 502};
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
  // A UDP association has no target yet: each datagram is judged as it comes.
  Acl::Verdict verdict = udp_ ? Acl::Verdict::check_addresses : s.acl.check_target(target_, uacl);
  if (verdict == Acl::Verdict::deny) return fail({Result::denied, 0x02, 403});
  name_allowed_ = verdict == Acl::Verdict::allow && target_.kind == Target::Kind::domain;
  RoutePlan plan = plan_route(s, {user_, group_}, u, w_.cursors());
  // An upstream resolves names itself: with allow lists, a name they do not list is refused.
  if (plan.kind == RoutePlan::Kind::upstream && verdict == Acl::Verdict::check_addresses &&
      !udp_ && s.acl.has_allow(uacl))
    return fail({Result::denied, 0x02, 403});
  switch (plan.kind) {
    case RoutePlan::Kind::refuse:
      refused_by_route_ = true;
      return fail({plan.socks_reply == 0x02 ? Result::denied : Result::upstream_error,
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
  upstream_->phase = UpstreamSession::Phase::resolving;
  upstream_->len = 0;
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
  if (!u.has_tls()) {
    upstream_->phase = UpstreamSession::Phase::greeting;
    return upstream_handshake_step();
  }
  upstream_->phase = UpstreamSession::Phase::tls;
  tls_ = std::make_unique<TlsIo>();
  const std::string& name =
      u.config.tls.server_name.empty() ? u.config.address : u.config.tls.server_name;
  if (!tls_->layer.start(u.tls.get(), name, w_.tls_session(u.config.id)))
    return upstream_attempt_failed({Result::error, 0x01, 502}, false, "TLS set-up failed");
  tls_handshake_step(Side::target);
}

// Sends the message of the current phase; its answer arrives in upstream_on_recv.
void Connection::upstream_handshake_step() {
  UpstreamSession& us = *upstream_;
  const UpstreamProxy& cfg = us.current()->config;
  bool socks = cfg.type == UpstreamType::socks5 || cfg.type == UpstreamType::socks5s;
  uint8_t buf[600];
  size_t n = 0;
  switch (us.phase) {
    case UpstreamSession::Phase::greeting:
      if (!socks) {
        us.phase = UpstreamSession::Phase::request;
        return upstream_handshake_step();
      }
      n = socks5::encode_greeting(!cfg.username.empty(), buf);
      us.out.assign(reinterpret_cast<char*>(buf), n);
      break;
    case UpstreamSession::Phase::auth:
      n = socks5::encode_userpass(cfg.username, cfg.password, buf);
      us.out.assign(reinterpret_cast<char*>(buf), n);
      break;
    case UpstreamSession::Phase::request:
      if (socks && udp_) {
        // Where we will send from is not known yet: all zeros (RFC 1928).
        Target any;
        set_host("0.0.0.0", any);
        n = socks5::encode_request(socks5::Command::udp_associate, any, buf);
        us.out.assign(reinterpret_cast<char*>(buf), n);
      } else if (socks) {
        n = socks5::encode_request(socks5::Command::connect, target_, buf);
        us.out.assign(reinterpret_cast<char*>(buf), n);
      } else {
        us.out = http::encode_connect(
            target_, cfg.username.empty() ? std::string()
                                          : http::basic_credentials(cfg.username, cfg.password));
      }
      break;
    default:
      return;
  }
  us.len = 0;
  submit_send_target(us.out.data(), static_cast<uint32_t>(us.out.size()));
}

void Connection::upstream_on_sent() {
  UpstreamSession& us = *upstream_;
  submit_recv_target(us.buf.get() + us.len, UpstreamSession::buf_cap - us.len);
}

void Connection::upstream_on_recv(int res) {
  UpstreamSession& us = *upstream_;
  if (res <= 0) {
    // Closed after our CONNECT: the upstream was working; it is the target that failed (dante
    // answers a refused target with a reset, and a TLS front end may drop the reply).
    bool after_request = us.phase == UpstreamSession::Phase::request;
    return upstream_attempt_failed(
        after_request ? Failure{Result::refused, 0x05, 502}
                      : Failure{Result::upstream_error, 0x01, 502},
        !after_request, res == 0 ? "closed during its handshake" : "reset during its handshake");
  }
  us.len += static_cast<uint32_t>(res);
  const UpstreamProxy& cfg = us.current()->config;
  auto more = [&] {
    if (us.len == UpstreamSession::buf_cap)
      return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                     "handshake reply too long");
    submit_recv_target(us.buf.get() + us.len, UpstreamSession::buf_cap - us.len);
  };
  const uint8_t* b = reinterpret_cast<const uint8_t*>(us.buf.get());
  switch (us.phase) {
    case UpstreamSession::Phase::greeting:
      if (us.len < 2) return more();
      if (b[0] != 5 || us.len > 2)
        return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                       "not a SOCKS5 server");
      if (b[1] == socks5::method_userpass && !cfg.username.empty())
        us.phase = UpstreamSession::Phase::auth;
      else if (b[1] == socks5::method_no_auth)
        us.phase = UpstreamSession::Phase::request;
      else
        return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                       "refused every authentication method we offered");
      return upstream_handshake_step();
    case UpstreamSession::Phase::auth:
      if (us.len < 2) return more();
      if (b[0] != 1 || b[1] != 0 || us.len > 2)
        return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                       "refused our username/password");
      us.phase = UpstreamSession::Phase::request;
      return upstream_handshake_step();
    case UpstreamSession::Phase::request:
      break;
    default:
      return;
  }
  if (cfg.type == UpstreamType::socks5 || cfg.type == UpstreamType::socks5s) {
    socks5::Reply rep;
    size_t used = 0;
    switch (socks5::parse_reply({b, us.len}, rep, used, us.relay)) {
      case socks5::Parse::need_more:
        return more();
      case socks5::Parse::error:
        return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                       "sent a malformed SOCKS5 reply");
      case socks5::Parse::done:
        break;
    }
    if (rep != socks5::Reply::succeeded) return fail(failure_for_socks_reply(rep));
    us.leftover.assign(us.buf.get() + used, us.len - used);
    return upstream_ready();
  }
  http::ResponseHead head;
  switch (http::parse_response_head({us.buf.get(), us.len}, head)) {
    case http::Parse::need_more:
      return more();
    case http::Parse::error:
      return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                     "sent a malformed HTTP response");
    case http::Parse::done:
      break;
  }
  if (head.status == 407)
    return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                   "refused our credentials (407)");
  if (head.status < 200 || head.status > 299) return fail(failure_for_http_status(head.status));
  us.leftover.assign(us.buf.get() + head.head_len, us.len - head.head_len);
  upstream_ready();
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
