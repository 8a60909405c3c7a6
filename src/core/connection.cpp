// Connection lifecycle: start, completions, deadlines, sends, and the one way out (finish).
#include "core/connection.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/access_log.h"
#include "core/worker.h"
#include "relay/http_forward.h"
#include "uringproxy/http.h"

namespace up {

namespace {
constexpr uint32_t bit(Op op) { return 1u << static_cast<unsigned>(op); }
constexpr uint32_t socks5_buffer = 1024;  // a greeting, 513-byte userpass and a request fit
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
    case Result::error: return "error";
  }
  return "error";
}

Connection::Connection(Worker& w, int client_fd, const ListenerConfig& listener,
                       uint16_t listener_index)
    : w_(w),
      cfd_(client_fd),
      protocol_(listener.protocol),
      listener_index_(listener_index),
      started_ms_(w.now_ms()) {
  state_ = protocol_ == Protocol::http ? State::http_head : State::greeting;
  timer.owner = this;
}

Connection::~Connection() = default;

void Connection::start() {
  socklen_t len = sizeof client_addr_;
  getpeername(cfd_, reinterpret_cast<sockaddr*>(&client_addr_), &len);
  set_deadline_in(w_.snapshot().config.limits.handshake_timeout_ms);
  ensure_handshake_buffer(protocol_ == Protocol::http ? http::max_head_bytes + 1 : socks5_buffer);
  submit_recv_client();
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
  auto next = std::make_unique<char[]>(cap);
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

void Connection::submit_recv_client() {
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_recv(s, cfd_, hs_.get() + hs_len_, hs_cap_ - hs_len_, 0);
  io_uring_sqe_set_data64(s, pack(this, Op::client_recv));
  mark(Op::client_recv);
}

void Connection::submit_recv_target(char* buf, uint32_t len) {
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_recv(s, tfd_, buf, len, 0);
  io_uring_sqe_set_data64(s, pack(this, Op::target_recv));
  mark(Op::target_recv);
}

void Connection::submit_send_client(const char* data, uint32_t len) {
  send_ptr_[0] = data;
  send_left_[0] = len;
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_send(s, cfd_, data, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, pack(this, Op::client_send));
  mark(Op::client_send);
}

void Connection::submit_send_target(const char* data, uint32_t len) {
  send_ptr_[1] = data;
  send_left_[1] = len;
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_send(s, tfd_, data, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, pack(this, Op::target_send));
  mark(Op::target_send);
}

void Connection::reply_client(const uint8_t* data, uint32_t len) {
  if (reply_len_ + len > sizeof reply_) {  // cannot happen with SOCKS5's reply sizes
    finish(Result::error);
    return;
  }
  memcpy(reply_ + reply_len_, data, len);
  reply_len_ += len;
  if (!(inflight_ & bit(Op::client_send))) submit_send_client(reply_, reply_len_);
}

void Connection::submit_poll(Op op, int fd, unsigned events) {
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_poll_add(s, fd, events);
  io_uring_sqe_set_data64(s, pack(this, op));
  mark(op);
}

void Connection::on_completion(Op op, int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) inflight_ &= ~bit(op);
  if (state_ == State::closed) return;  // late or cancelled completion
  if (state_ == State::failing && (op == Op::client_recv || op == Op::target_recv)) return;
  switch (op) {
    case Op::client_recv:
      if (fwd_) {
        fwd_->on_client_recv(res);
        return;
      }
      if (res <= 0) {
        finish(res == 0 ? Result::client_closed : Result::reset);
        return;
      }
      hs_len_ += res;
      on_client_data();
      return;
    case Op::client_send:
    case Op::target_send:
      on_send_done(op, res);
      return;
    case Op::target_recv:
      if (fwd_) fwd_->on_target_recv(res);
      return;
    case Op::connect:
      on_connect(res);
      return;
    case Op::up_in:
    case Op::up_out:
    case Op::down_in:
    case Op::down_out:
      if (res < 0) {
        relay_error(-res);
        return;
      }
      if (op == Op::up_in || op == Op::up_out)
        pump(up_, true);
      else
        pump(down_, false);
      return;
    default:
      return;
  }
}

void Connection::on_send_done(Op op, int res) {
  int i = op == Op::client_send ? 0 : 1;
  if (res < 0) {
    finish(res == -EPIPE || res == -ECONNRESET ? Result::reset : Result::error);
    return;
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
    if (sent < reply_len_) {
      submit_send_client(send_ptr_[0], reply_len_ - sent);
      return;
    }
    reply_len_ = 0;
  }
  switch (state_) {
    case State::failing:
      finish(result_);
      return;
    case State::replying:
      if (i == 0) start_relay();
      return;
    case State::relaying:
      if (i == 1) {  // bytes the client pipelined behind its handshake have reached the target
        drop_handshake_buffer();
        pump(up_, true);
      }
      return;
    case State::forwarding:
      if (fwd_) fwd_->on_sent(i == 0);
      return;
    default:
      return;
  }
}

void Connection::on_timeout() {
  switch (state_) {
    case State::greeting:
    case State::userpass:
    case State::request:
    case State::http_head:
    case State::verifying:
      finish(Result::handshake_timeout);
      return;
    case State::dialing:
      fail({Result::timeout, 0x06, 504});
      return;
    case State::replying:
    case State::relaying:
    case State::forwarding:
      finish(Result::idle_timeout);
      return;
    case State::failing:
      finish(result_);
      return;
    case State::closed:
      return;
  }
}

void Connection::abort(Result r) { finish(r); }

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
  // fds can be closed at once; the sockets go away when the cancels are processed.
  for (unsigned op = first_conn_op; op < static_cast<unsigned>(Op::count); ++op) {
    if (!(inflight_ & (1u << op))) continue;
    io_uring_sqe* s = w_.sqe();
    io_uring_prep_cancel64(s, pack(this, static_cast<Op>(op)), 0);
    io_uring_sqe_set_data64(s, pack(nullptr, Op::ignored));
    s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  }
  if (resolving_) {
    w_.dns().cancel(target_.host, this);
    resolving_ = false;
  }
  bool reset = r == Result::reset;
  close_fds(reset);
  for (Direction* d : {&up_, &down_}) {
    if (!d->pipe) continue;
    if (d->in_pipe)
      w_.pipes().discard(d->pipe);
    else
      w_.pipes().release(d->pipe);
    d->pipe = nullptr;
  }
  drop_handshake_buffer();
  fwd_.reset();
  w_.timers().disarm(&timer);
  timer.deadline_ms = 0;
  auto& c = w_.counters();
  WorkerCounters::add(c.bytes_up, bytes_up_);
  WorkerCounters::add(c.bytes_down, bytes_down_);
  if (r == Result::auth_failed) WorkerCounters::add(c.auth_failures, 1);
  write_access_log();
}

void Connection::write_access_log() {
  const AccessLog* log = w_.runtime().access_log;
  if (!log || !log->enabled()) return;
  char client[INET6_ADDRSTRLEN + 8] = "";
  if (client_addr_.sin6_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&client_addr_);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(client, sizeof client, "%s:%u", ip, ntohs(a->sin_port));
  } else if (client_addr_.sin6_family == AF_INET6) {
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &client_addr_.sin6_addr, ip, sizeof ip);
    snprintf(client, sizeof client, "[%s]:%u", ip, ntohs(client_addr_.sin6_port));
  }
  std::string target = target_.port ? target_.to_string() : std::string();
  AccessRecord rec{user_,      {},          client,
                   target,     "direct",    bytes_up_,
                   bytes_down_, w_.now_ms() - started_ms_, to_string(result_)};
  log->write(rec);
}

}  // namespace up
