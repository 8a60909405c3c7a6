// The connection's side of dialing: admits the user (quota, connection limit), hands the
// request to the dialer (upstream/dialer.h) and takes its result back: the target transport
// it set up, or the failure the frontend answers with.
#include <errno.h>

#include "agent/agent_registry.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/tls_io.h"
#include "core/worker.h"
#include "frontend/frontend.h"
#include "upstream/dialer.h"

namespace up {

bool Connection::admit_user() {
  const Snapshot& s = w_.snapshot();
  const User* u = user_.empty() ? nullptr : s.find_user(user_);
  if (!u) return true;
  UserShared* shared = s.find_user_state(user_);
  if (shared && shared->over_quota.load(std::memory_order_relaxed)) {
    fail({Result::over_quota, 0x02, 429});
    return false;
  }
  if (limits_ || !shared) return true;
  // Counted once per client connection, across all workers.
  UserLimits lim = effective_limits(*u, s.config.limits);
  uint32_t max = lim.max_connections;
  if (shared->active.fetch_add(1, std::memory_order_relaxed) >= max && max) {
    shared->active.fetch_sub(1, std::memory_order_relaxed);
    fail({Result::limited, 0x02, 429});
    return false;
  }
  limits_ = shared;
  bandwidth_bps_ = lim.bandwidth_bps;
  return true;
}

void Connection::start_dialer() {
  Dialer::Kind kind = udp_        ? Dialer::Kind::udp
                      : bind_     ? Dialer::Kind::bind
                      : datagram_ ? Dialer::Kind::datagram
                                  : Dialer::Kind::tunnel;
  dialer_ = std::make_unique<Dialer>(*this, kind);
  state_ = State::dialing;
}

void Connection::route_and_dial() {
  if (!admit_user()) return;
  start_dialer();
  dialer_->route();
}

void Connection::bind_request() {
  bind_ = true;
  route_and_dial();  // limits, ACL and route; the dialer resolves, then listens
}

void Connection::dial_direct() {
  start_dialer();
  dialer_->direct();
}

void Connection::set_target_tls(std::unique_ptr<TlsIo> t) { tls_ = std::move(t); }

void Connection::wait_for_retry() { w_.wait_for_pipe(this); }

void Connection::use_route(std::shared_ptr<const Upstream> u) {
  route_ = std::move(u);
  if (!counted_active_) {
    route_->health->active.fetch_add(1, std::memory_order_relaxed);
    counted_active_ = true;
  }
}

void Connection::release_route() {
  if (counted_active_) {
    route_->health->active.fetch_sub(1, std::memory_order_relaxed);
    if (route_->config.type == UpstreamType::agent)
      w_.runtime().agents->tunnel_ended(route_->config.name);
  }
  counted_active_ = false;
  route_.reset();
}

void Connection::dialed() {
  if (udp_) return udp_dialed();
  state_ = State::replying;  // the frontend's success reply; its completion starts the relay
  frontend_->answer_dialed();
}

void Connection::dialed_with_reply(const uint8_t* data, uint32_t len) {
  state_ = State::replying;
  touch();
  reply_client(data, len);
}

void Connection::fail(const Failure& f) {
  if (state_ == State::closed) return;
  if (dialer_) dialer_->cancel_resolve();
  close_target();
  result_ = f.result;
  state_ = State::failing;
  set_deadline_in(2000);  // a client that will not read its error reply is not waited for
  frontend_->answer_failure(f);
}

void Connection::close_target() {
  // Operations still in flight on the target hold their own file reference; cancel them so
  // they complete (their buffers stay alive until the connection is freed or they are done).
  cancel_ops(target_ops_mask);
  if (tls_ && !tls_->handshaking && route_ && route_->config.type != UpstreamType::agent)
    w_.keep_tls_session(route_->config.id, tls_->layer.session());
  if (tfd_ >= 0) {
    w_.close_fd(tfd_);
    tfd_ = -1;
  }
}

}  // namespace up
