// Connection lifecycle: start, completions, deadlines, sends, and the one way out (finish).
#include "core/connection.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_registry.h"
#include "agent/gateway_links.h"
#include "agent/reverse_link.h"
#include "core/access_log.h"
#include "core/clock.h"
#include "core/tls_io.h"
#include "core/worker.h"
#include "frontend/frontend.h"
#include "frontend/http_forward.h"
#include "relay/relay.h"
#include "udp/udp_association.h"
#include "upstream/dialer.h"
#include "upstream/upstream_session.h"
#include "uringproxy/http.h"

namespace up {

namespace {
constexpr uint32_t bit(Op op) { return 1u << static_cast<unsigned>(op); }
}  // namespace

const char* to_string(Result r) {
  switch (r) {
    case Result::ok: return "ok";
    case Result::auth_failed: return "auth_failed";
    case Result::denied: return "denied";
    case Result::bad_request: return "bad_request";
    case Result::unsupported: return "unsupported";
    case Result::dns_failed: return "dns_failed";
    case Result::refused: return "refused";
    case Result::unreachable: return "unreachable";
    case Result::timeout: return "timeout";
    case Result::handshake_timeout: return "handshake_timeout";
    case Result::idle_timeout: return "idle_timeout";
    case Result::reset: return "reset";
    case Result::upstream_error: return "upstream_error";
    case Result::shutdown: return "shutdown";
    case Result::client_closed: return "client_closed";
    case Result::kicked: return "kicked";
    case Result::limited: return "limited";
    case Result::over_quota: return "over_quota";
    case Result::tls_failed: return "tls_failed";
    case Result::error: return "error";
  }
  return "error";
}

Connection::Connection(Worker& w, int client_fd, const ListenerConfig& listener,
                       uint16_t listener_index)
    : w_(w),
      cfd_(client_fd),
      listener_index_(listener_index),
      started_ms_(w.now_ms()) {
  frontend_ = make_frontend(listener.protocol, *this);
  timer.owner = this;
  if (listener.tls) {
    // The context of the snapshot this connection was accepted under; none means the listener
    // is not (or no longer) configured with TLS here, and the client is closed (fail closed).
    ctls_ = std::make_unique<TlsIo>();
    ctls_->listener = listener.name;
    tls_ctx_ = w.snapshot().find_listener_tls(listener.name);
  }
}

// Agent mode (agent/reverse_link.cpp): its link to the gateway.
Connection::Connection(Worker& w, GatewayLinks& links, bool control)
    : w_(w), cfd_(-1), listener_index_(UINT16_MAX), started_ms_(w.now_ms()) {
  timer.owner = this;
  agent_link_ = true;
  user_ = control ? GatewayLinks::control_user : GatewayLinks::idle_user;
  ctls_ = std::make_unique<TlsIo>();
  ctls_->listener = "agent-link";
  frontend_ = std::make_unique<ReverseLink>(*this, links, control);
}

Connection::~Connection() = default;

void Connection::start() {
  socklen_t len = sizeof client_addr_;
  getpeername(cfd_, reinterpret_cast<sockaddr*>(&client_addr_), &len);
  // The handshake timeout covers a TLS listener's TLS handshake too.
  set_deadline_in(w_.snapshot().config.limits.handshake_timeout_ms);
  if (!ctls_) return begin_session();
  ctls_->started_us = monotonic_us();
  if (!tls_ctx_ || !ctls_->layer.start_server(tls_ctx_.get()))
    return tls_handshake_failed(Side::client, "no TLS context");
  tls_ctx_.reset();  // the SSL holds its own reference
  tls_handshake_step(Side::client);
}

void Connection::begin_session() { frontend_->begin(); }

int Connection::release_client(std::unique_ptr<TlsIo>& tls) {
  tls = std::move(ctls_);
  int fd = cfd_;
  cfd_ = -1;
  return fd;
}

uint64_t Connection::age_ms() const { return w_.now_ms() - started_ms_; }

HttpForward& Connection::start_forwarding() {
  state_ = State::forwarding;
  fwd_ = std::make_unique<HttpForward>(*this);
  return *fwd_;
}

void Connection::read_more_handshake() {
  if (hs_len_ == hs_cap_) return finish(Result::bad_request);  // no valid message is that long
  submit_recv_client();
}

void Connection::next_handshake_message() {
  if (hs_len_ > 0) return frontend_->on_client_data(0);  // pipelined behind the last one
  submit_recv_client();
}

void Connection::fail_after_reply(Result r) {
  result_ = r;
  state_ = State::failing;
}

bool Connection::mark(Op op) {
  inflight_ |= bit(op);
  return true;
}

void Connection::set_deadline_in(uint32_t ms) {
  w_.timers().set_deadline(&timer, ms ? w_.now_ms() + ms : 0);
}

void Connection::ensure_handshake_buffer(uint32_t cap) {
  if (hs_cap_ >= cap) return;
  auto next = std::make_unique_for_overwrite<char[]>(cap);
  if (hs_len_) memcpy(next.get(), hs_.get(), hs_len_);
  hs_ = std::move(next);
  hs_cap_ = cap;
}

void Connection::drop_handshake_buffer() {
  hs_.reset();
  hs_len_ = hs_cap_ = 0;
}

void Connection::consume_handshake(uint32_t n) {
  memmove(hs_.get(), hs_.get() + n, hs_len_ - n);
  hs_len_ -= n;
}

void Connection::submit_recv_client() { submit_recv_client(hs_.get() + hs_len_, hs_cap_ - hs_len_); }

void Connection::reply_client(const uint8_t* data, uint32_t len) {
  if (reply_len_ + len > sizeof reply_) {  // cannot happen with SOCKS5's reply sizes
    finish(Result::error);
    return;
  }
  memcpy(reply_ + reply_len_, data, len);
  reply_len_ += len;
  if (!client_send_pending()) submit_send_client(reply_, reply_len_);
}

void Connection::submit(io_uring_sqe* sqe, Op op) {
  io_uring_sqe_set_data64(sqe, pack(this, op));
  mark(op);
}

void Connection::touch() { set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms); }

void Connection::on_completion(Op op, int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) inflight_ &= ~bit(op);
  if (op == Op::bind_accept) {  // its fd is ours in every state
    if (dialer_) return dialer_->on_bind_accept(res);
    if (res >= 0) w_.close_fd(res);
    return;
  }
  if (state_ == State::closed) return reclaim(op, flags);  // late or cancelled
  if (op == Op::client_recv || op == Op::target_recv)
    recv_drained_[op == Op::target_recv] = recv_emptied(w_.ring_features(), flags);
  if (dialer_ && dialer_->retry_pending()) {
    // Old target operations of a failed upstream attempt finishing; then the next attempt.
    if (bit(op) & target_ops_mask) {
      if (!(inflight_ & target_ops_mask)) dialer_->on_target_ops_drained();
      return;
    }
  }
  if (fwd_ && fwd_->draining() && (bit(op) & target_ops_mask)) {
    if (!(inflight_ & target_ops_mask)) fwd_->target_drained();
    return;
  }
  // While an error reply goes out, only that send matters.
  if (state_ == State::failing && op != Op::client_send && op != Op::client_tls_send) return;
  switch (op) {
    case Op::client_recv:
      if (state_ == State::udp) return udp_on_control(Side::client, res);
      if (relay_) return relay_->on_recv(Side::client, res);
      if (fwd_) {
        if (res > 0) hs_len_ += res;
        return fwd_->on_client_recv(res);
      }
      if (res <= 0) return finish(res == 0 ? Result::client_closed : Result::reset);
      hs_len_ += res;
      return frontend_->on_client_data(static_cast<uint32_t>(res));
    case Op::client_send:
    case Op::target_send:
      return on_send_done(op, res);
    case Op::target_recv:
      return on_target_recv(res);
    case Op::tls_send:
      return tls_on_ring_send(Side::target, res);
    case Op::tls_recv:
      return tls_on_ring_recv(Side::target, res);
    case Op::client_tls_send:
      return tls_on_ring_send(Side::client, res);
    case Op::client_tls_recv:
      return tls_on_ring_recv(Side::client, res);
    case Op::connect:
      if (agent_link_ && state_ == State::handshake) return link_connected(res);
      if (dialer_) dialer_->on_connect(res);
      return;
    case Op::bind_hangup:
      if (dialer_) dialer_->on_bind_hangup(res);
      return;
    case Op::up_in:
    case Op::up_out:
    case Op::down_in:
    case Op::down_out:
      if (relay_) relay_->on_op(op, res, flags);
      return;
    default:
      return;
  }
}

void Connection::on_target_recv(int res) {
  if (state_ == State::dialing && dialer_) return dialer_->on_target_recv(res);
  if (state_ == State::udp) return udp_on_control(Side::target, res);
  if (relay_) return relay_->on_recv(Side::target, res);
  if (fwd_) return fwd_->on_target_recv(res);
}

void Connection::on_send_done(Op op, int res) {
  int i = op == Op::client_send ? 0 : 1;
  if (res < 0 && state_ == State::relaying && relay_ &&
      relay_->on_send_error(i == 0 ? Side::client : Side::target, -res)) {
    send_left_[i] = 0;  // the relay took the loss (a datagram), not the tunnel's end
    return;
  }
  if (res < 0) {
    if (i == 1 && state_ == State::dialing && dialer_ && dialer_->upstream())
      return dialer_->on_target_send_failed();
    return finish(res == -EPIPE || res == -ECONNRESET ? Result::reset : Result::error);
  }
  send_ptr_[i] += res;
  send_left_[i] -= res;
  if (send_left_[i] > 0) {
    if (i == 0)
      submit_send_client(send_ptr_[0], send_left_[0]);
    else
      submit_send_target(send_ptr_[1], send_left_[1]);
    return;
  }
  if (i == 0 && reply_len_ > 0) {
    // Replies queued while this send was in flight go out next.
    uint32_t sent = static_cast<uint32_t>(send_ptr_[0] - reply_);
    if (sent < reply_len_) return submit_send_client(send_ptr_[0], reply_len_ - sent);
    reply_len_ = 0;
  }
  switch (state_) {
    case State::failing:
      return finish(result_);
    case State::dialing:
      if (i == 1 && dialer_) dialer_->on_target_sent();
      return;
    case State::replying:
      if (i == 0) start_relay();
      return;
    case State::relaying:
      return relay_->on_sent(i == 0 ? Side::client : Side::target);
    case State::forwarding:
      if (fwd_) fwd_->on_sent(i == 0);
      return;
    case State::agent:
      if (i == 0) frontend_->on_sent();
      return;
    default:
      return;
  }
}

void Connection::on_timeout() {
  if (ctls_ && ctls_->handshaking && state_ != State::closed) {
    count_tls_handshake("timeout");
    return finish(Result::handshake_timeout);
  }
  switch (state_) {
    case State::handshake:
    case State::verifying:
      finish(Result::handshake_timeout);
      return;
    case State::dialing:
      if (dialer_) return dialer_->on_timeout();
      return fail({Result::timeout, 0x06, 504});
    case State::replying:
    case State::relaying:
    case State::forwarding:
    case State::udp:
      finish(Result::idle_timeout);
      return;
    case State::agent:
      return frontend_->on_timeout();
    case State::failing:
      if (auth_delayed_) {
        auth_delayed_ = false;
        set_deadline_in(2000);  // as for any error reply
        return frontend_->answer_auth_failed();
      }
      finish(result_);
      return;
    case State::closed:
      return;
  }
}

void Connection::abort(Result r) { finish(r); }

void Connection::start_relay() {
  state_ = State::relaying;
  touch();
  // Bytes the client pipelined behind its handshake, and tunnel bytes that came with an
  // upstream's reply, go first; the handshake state is not needed any more.
  std::string to_target(hs_ ? hs_.get() : "", hs_len_);
  drop_handshake_buffer();
  std::string to_client = dialer_ ? dialer_->take_leftover() : std::string();
  dialer_.reset();  // nothing of it is in flight once the client has its answer
  relay_ = make_relay(*this, std::move(to_target), std::move(to_client));
  relay_->start();
}

void Connection::retry_pipe() {
  if (dialer_ && dialer_->waiting()) return dialer_->retry();
  if (udp_) return udp_retry();
  if (relay_) return relay_->retry();
  if (fwd_) return fwd_->retry();
}

void Connection::reclaim(Op op, uint32_t flags) {
  // A recv that picked one of the worker's buffers as it was being cancelled.
  if (flags & IORING_CQE_F_BUFFER) {
    w_.buffers()->taken();
    w_.buffers()->put(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));
    return;
  }
  if (relay_) relay_->reclaim(op);
}

void Connection::cancel_ops(uint32_t mask) {
  for (unsigned op = first_conn_op; op < static_cast<unsigned>(Op::count); ++op) {
    if (!(inflight_ & mask & (1u << op))) continue;
    io_uring_sqe* s = w_.sqe();
    io_uring_prep_cancel64(s, pack(this, static_cast<Op>(op)), 0);
    io_uring_sqe_set_data64(s, pack(nullptr, Op::ignored));
    s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  }
}


void Connection::close_fds(bool reset) {
  for (int* fd : {&cfd_, &tfd_}) {
    if (*fd < 0) continue;
    if (reset) {
      linger lg{1, 0};  // RST, so the peer learns the other side failed rather than finished
      setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    w_.close_fd(*fd);
    *fd = -1;
  }
}

void Connection::finish(Result r) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  result_ = r;
  // Cancel what is still outstanding. Pending requests hold their own file references, so the
  // fds can be closed at once; buffers they may still write into (handshake, forwarding, TLS)
  // live until the connection is freed, after the last completion.
  cancel_ops(~0u);
  if (dialer_) dialer_->cancel_resolve();
  if (udp_) udp_->close();
  if (tls_ && !tls_->handshaking && route_ && route_->config.type != UpstreamType::agent)
    w_.keep_tls_session(route_->config.id, tls_->layer.session());
  close_fds(r == Result::reset);
  if (relay_) relay_->release();
  w_.timers().disarm(&timer);
  timer.deadline_ms = 0;
  if (frontend_) frontend_->on_finish();
  if (r == Result::auth_failed) ++w_.stats().auth_failures;
  settle_user();
  release_route();
}

void Connection::settle_user() {
  if (tally_) --tally_->connections_active;
  if (limits_) limits_->active.fetch_sub(1, std::memory_order_relaxed);
  tally_ = nullptr;
  limits_ = nullptr;
  bandwidth_bps_ = 0;
  if (agent_link_) return;  // an agent's own link is not a tunnel
  ++w_.stats().routes[std::string(route_name())];
  write_access_log();
}

void Connection::change_user() {
  close_target();
  settle_user();
  release_route();
  // The previous request's route is not the next one's; its dialer goes unless a cancelled
  // operation may still write into it (then the next dial replaces it).
  if (!target_ops_in_flight()) dialer_.reset();
  bytes_up_ = bytes_down_ = 0;
  started_ms_ = w_.now_ms();
  result_ = Result::ok;
}

std::string_view Connection::route_name() const {
  if (route_) return route_->config.id;
  if (!dialer_) return "direct";
  if (dialer_->refused()) return "reject";
  // e.g. the upstream refused the target
  if (const UpstreamSession* us = dialer_->upstream()) return us->current()->config.id;
  return "direct";
}

size_t Connection::bandwidth_allowance(bool up, size_t wants) {
  if (!bandwidth_bps_) return SIZE_MAX;
  RateLimiter& r = up ? limits_->up : limits_->down;
  return r.allowance(monotonic_us() * 1000, bandwidth_bps_, wants);
}

void Connection::bandwidth_consume(bool up, size_t n) {
  if (!bandwidth_bps_) return;
  RateLimiter& r = up ? limits_->up : limits_->down;
  r.consume(monotonic_us() * 1000, n, bandwidth_bps_);
}

void Connection::count_up(uint64_t n) {
  bytes_up_ += n;
  w_.stats().bytes_up += n;
  if (tally_) tally_->bytes_up += n;
}

void Connection::count_down(uint64_t n) {
  bytes_down_ += n;
  w_.stats().bytes_down += n;
  if (tally_) tally_->bytes_down += n;
}

std::string format_client(const sockaddr_in6& a) {
  char ip[INET6_ADDRSTRLEN] = "";
  char out[INET6_ADDRSTRLEN + 8] = "";
  if (a.sin6_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
    snprintf(out, sizeof out, "%s:%u", ip, ntohs(v4->sin_port));
  } else if (a.sin6_family == AF_INET6) {
    inet_ntop(AF_INET6, &a.sin6_addr, ip, sizeof ip);
    snprintf(out, sizeof out, "[%s]:%u", ip, ntohs(a.sin6_port));
  }
  return out;
}

ConnectionInfo Connection::describe(uint64_t now_ms) const {
  ConnectionInfo i;
  i.user = user_;
  i.group = group_;
  i.client = format_client(client_addr_);
  i.target = target_.port || bind_ ? target_.to_string() : std::string();
  if (udp_ || datagram_) i.target = "udp:" + (i.target.empty() ? std::string("*") : i.target);
  if (bind_) i.target = "bind:" + i.target;
  i.route = route_name();
  i.bytes_up = bytes_up_;
  i.bytes_down = bytes_down_;
  i.age_s = (now_ms - started_ms_) / 1000;
  return i;
}

void Connection::write_access_log() {
  AccessLog* log = w_.runtime().access_log;
  if (!log || !log->enabled()) return;
  std::string client = format_client(client_addr_);
  // A BIND's named peer often has port 0: it is logged all the same.
  std::string target = target_.port || bind_ ? target_.to_string() : std::string();
  AccessRecord rec{user_,       group_,       client,
                   target,      route_name(), bytes_up_,
                   bytes_down_, w_.now_ms() - started_ms_, to_string(result_)};
  if (udp_) {
    rec.udp = true;
    rec.datagrams_up = udp_->datagrams_up();
    rec.datagrams_down = udp_->datagrams_down();
  } else if (datagram_) {
    rec.udp = true;
    rec.datagrams_up = datagrams_up_;
    rec.datagrams_down = datagrams_down_;
  }
  log->write(w_.id(), rec);
}

}  // namespace up
