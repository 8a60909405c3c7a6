// The zero-copy relay: socket -> pipe -> socket with splice(2), driven by readiness polls on
// the worker's ring. Directions start on the small-message path (relay/buffer_relay.cpp) and
// come here once their bytes turn out to be bulk. Each direction takes a pipe from the
// worker's pool only while bytes are in it, so idle tunnels hold none. One side's EOF shuts the other side's write half; the tunnel
// ends when both directions are done (RFC 9293 half-close), or at once on an error (reset is
// passed on as a reset).
//
// Why not IORING_OP_SPLICE: the kernel always punts it to io-wq threads (liburing issue 426),
// which on a small machine costs a context switch per chunk. A poll completion plus a
// non-blocking splice(2) on the worker moves the same bytes with no extra thread.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "core/connection.h"
#include "core/clock.h"
#include "core/worker.h"
#include "relay/copy_relay.h"
#include "relay/http_forward.h"
#include "upstream/upstream_session.h"

namespace up {

namespace {
constexpr int rounds_per_event = 8;  // fairness: then yield to other connections
constexpr unsigned splice_flags = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
}  // namespace

void Connection::start_relay() {
  // TLS bytes have to pass through user space.
  if (tls_ || ctls_) return start_copy_relay();
  state_ = State::relaying;
  bool spliced = !w_.buffers() || w_.runtime().relay == Runtime::Relay::splice;
  up_.spliced = down_.spliced = spliced;
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  if (hs_len_ > 0) {
    // Bytes the client sent right behind its handshake go first; the up pump starts when
    // they have been written (on_send_done).
    submit_send_target(hs_.get(), hs_len_);
  } else {
    drop_handshake_buffer();
    relay_in(up_, true);
  }
  if (upstream_ && !upstream_->leftover.empty()) {
    // Tunnel bytes that came with the upstream's reply (a server that speaks first) go to
    // the client before the down pump starts.
    submit_send_client(upstream_->leftover.data(),
                       static_cast<uint32_t>(upstream_->leftover.size()));
  } else {
    upstream_.reset();
    relay_in(down_, false);
  }
}

void Connection::relay_in(Direction& d, bool up) {
  if (d.spliced) return pump(d, up);
  buffer_recv(d, up);
}

void Connection::relay_error(int err) {
  finish(err == ECONNRESET || err == EPIPE || err == ECONNABORTED ? Result::reset
                                                                  : Result::error);
}

void Connection::retry_pipe() {
  if (copy_) return copy_retry();
  if (fwd_) return fwd_->retry();
  if (up_.wants_pipe || up_.throttled) {
    up_.wants_pipe = up_.throttled = false;
    relay_in(up_, true);
  }
  if (state_ == State::closed) return;
  if (down_.wants_pipe || down_.throttled) {
    down_.wants_pipe = down_.throttled = false;
    relay_in(down_, false);
  }
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

void Connection::pump(Direction& d, bool up) {
  if (d.done || state_ != State::relaying) return;
  const int src = up ? cfd_ : tfd_;
  const int dst = up ? tfd_ : cfd_;
  const Op in = up ? Op::up_in : Op::down_in;
  const Op out = up ? Op::up_out : Op::down_out;
  bool drained_src = false;  // last read was short: the socket had no more queued

  for (int round = 0; round < rounds_per_event; ++round) {
    if (d.in_pipe > 0) {
      ssize_t n = splice(d.pipe->rd, nullptr, dst, nullptr, d.in_pipe, splice_flags);
      if (n < 0) {
        if (errno == EAGAIN) return submit_poll(out, dst, POLLOUT);
        return relay_error(errno);
      }
      d.in_pipe -= static_cast<uint32_t>(n);
      up ? count_up(static_cast<uint64_t>(n)) : count_down(static_cast<uint64_t>(n));
      if (d.in_pipe > 0) return submit_poll(out, dst, POLLOUT);  // dst's buffer is full
    }
    if (d.eof) {
      if (d.pipe) w_.pipes().release(d.pipe);
      d.pipe = nullptr;
      shutdown(dst, SHUT_WR);
      d.done = true;
      return maybe_finish_relay();
    }
    if (drained_src) break;
    if (!d.pipe) {
      d.pipe = w_.pipes().acquire();
      if (!d.pipe) {
        d.wants_pipe = true;
        return w_.wait_for_pipe(this);
      }
    }
    size_t want = static_cast<size_t>(d.pipe->size);
    if (bandwidth_bps_) {
      // The user's cap holds across all their tunnels and workers; at it, this direction
      // waits for the next tick. Below it, bytes still never leave the kernel.
      size_t allowed = bandwidth_allowance(up, want);
      if (allowed == 0) {
        w_.pipes().release(d.pipe);
        d.pipe = nullptr;
        d.throttled = true;
        return w_.wait_for_pipe(this);
      }
      want = std::min(want, allowed);
    }
    ssize_t n = splice(src, nullptr, d.pipe->wr, nullptr, want, splice_flags);
    if (n > 0) {
      d.in_pipe = static_cast<uint32_t>(n);
      bandwidth_consume(up, static_cast<size_t>(n));
      drained_src = static_cast<size_t>(n) < want;
      if (!drained_src) d.on_loan = false;  // bulk: splice for good
      set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
      continue;
    }
    if (n == 0) {
      d.eof = true;
      continue;
    }
    if (errno == EAGAIN) break;
    return relay_error(errno);
  }
  // This event had its share, or the source is drained. Bytes still in the pipe must not wait
  // for more input (the peer may be waiting for them): resume when dst can take them.
  if (d.in_pipe > 0) return submit_poll(out, dst, POLLOUT);
  if (d.pipe) {
    w_.pipes().release(d.pipe);
    d.pipe = nullptr;
  }
  if (d.on_loan && w_.buffers()->has_free()) {
    // Idle, and the pool that ran dry has room again: small messages go back to buffers.
    d.on_loan = false;
    d.spliced = false;
    return buffer_recv(d, up);
  }
  submit_poll(in, src, POLLIN);
}

// io_uring reports EPOLLRDHUP whatever a poll asked for. Once dst's peer has half-closed (an
// HTTP/1.0-style client that shut its side after the request, say), a POLLOUT wait completes
// at once even while dst is full, and polling again would spin. There, the pipe's first bytes
// are read out and sent with IORING_OP_SEND, whose own wait copes with a half-closed peer;
// when that send is done, dst has room and splicing resumes. Order is kept: the rest of the
// pipe goes only after them.
void Connection::on_dst_writable(Direction& d, bool up, int res) {
  if (d.nudge_sent < d.nudge_len) {  // a nudge send completed; res is bytes sent
    if (res == 0) return relay_error(EIO);
    d.nudge_sent += static_cast<uint32_t>(res);
    up ? count_up(static_cast<uint64_t>(res)) : count_down(static_cast<uint64_t>(res));
    if (d.nudge_sent < d.nudge_len) return nudge_send(d, up);
    d.nudge_len = d.nudge_sent = 0;
    return pump(d, up);
  }
  if (res & (POLLOUT | POLLERR | POLLHUP) || d.in_pipe == 0) return pump(d, up);
  constexpr uint32_t nudge_cap = 4096;
  if (!d.nudge) d.nudge = std::make_unique<char[]>(nudge_cap);
  ssize_t n = read(d.pipe->rd, d.nudge.get(), std::min(d.in_pipe, nudge_cap));
  if (n <= 0) return relay_error(n < 0 ? errno : EIO);
  d.in_pipe -= static_cast<uint32_t>(n);
  d.nudge_len = static_cast<uint32_t>(n);
  d.nudge_sent = 0;
  nudge_send(d, up);
}

void Connection::nudge_send(Direction& d, bool up) {
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_send(s, up ? tfd_ : cfd_, d.nudge.get() + d.nudge_sent, d.nudge_len - d.nudge_sent,
                     MSG_NOSIGNAL);
  Op op = up ? Op::up_out : Op::down_out;
  io_uring_sqe_set_data64(s, pack(this, op));
  mark(op);
}

void Connection::maybe_finish_relay() {
  bool up = copy_ ? copy_->up_done : up_.done;
  bool down = copy_ ? copy_->down_done : down_.done;
  if (up && down) finish(Result::ok);
}

}  // namespace up
