// The zero-copy relay: socket -> pipe -> socket with splice(2), driven by readiness polls on
// the worker's ring. Directions start on the small-message path (relay/buffer_relay.cpp) and
// come here once their bytes turn out to be bulk. Each direction takes a pipe from the
// worker's pool only while bytes are in it, so idle tunnels hold none. One side's EOF shuts the
// other side's write half; the tunnel ends when both directions are done (RFC 9293 half-close), or at once on an error (reset is
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
#include "core/worker.h"
#include "relay/copy_relay.h"
#include "relay/datagram_relay.h"
#include "relay/splice_relay.h"

namespace up {

namespace {
constexpr int rounds_per_event = 8;  // fairness: then yield to other connections
constexpr unsigned splice_flags = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
}  // namespace

std::unique_ptr<Relay> make_relay(Connection& c, std::string to_target, std::string to_client) {
  if (c.datagram()) return std::make_unique<DatagramRelay>(c, std::move(to_target));
  // TLS bytes have to pass through user space.
  if (c.tls(Side::client) || c.tls(Side::target))
    return std::make_unique<CopyRelay>(c, std::move(to_target), std::move(to_client));
  return std::make_unique<SpliceRelay>(c, std::move(to_target), std::move(to_client));
}

void end_tunnel_on_error(Connection& c, int err) {
  c.finish(err == ECONNRESET || err == EPIPE || err == ECONNABORTED ? Result::reset
                                                                    : Result::error);
}

SpliceRelay::SpliceRelay(Connection& c, std::string to_target, std::string to_client)
    : c_(c), to_target_(std::move(to_target)), to_client_(std::move(to_client)) {}

void SpliceRelay::start() {
  Worker& w = c_.worker();
  bool spliced = !w.buffers() || w.runtime().relay == Runtime::Relay::splice;
  up_.spliced = down_.spliced = spliced;
  // Bytes the client sent right behind its handshake go first, and tunnel bytes that came
  // with an upstream's reply (a server that speaks first): each direction's pump starts when
  // they have been written (on_sent).
  if (!to_target_.empty())
    c_.submit_send(Side::target, to_target_.data(), static_cast<uint32_t>(to_target_.size()));
  else
    relay_in(up_, true);
  if (c_.closed()) return;
  if (!to_client_.empty())
    c_.submit_send(Side::client, to_client_.data(), static_cast<uint32_t>(to_client_.size()));
  else
    relay_in(down_, false);
}

void SpliceRelay::on_sent(Side s) {
  // The first bytes are tunnel bytes like any other: counted (access log, usage, quotas).
  if (s == Side::target) {
    c_.count_up(to_target_.size());
    to_target_ = std::string();
    return relay_in(up_, true);
  }
  c_.count_down(to_client_.size());
  to_client_ = std::string();
  relay_in(down_, false);
}

void SpliceRelay::on_op(Op op, int res, uint32_t flags) {
  bool up = op == Op::up_in || op == Op::up_out;
  Direction& d = up ? up_ : down_;
  bool in = op == Op::up_in || op == Op::down_in;
  if (!d.spliced) return in ? buffer_on_recv(d, up, res, flags) : buffer_on_sent(d, up, res);
  if (res < 0) return end_tunnel_on_error(c_, -res);
  if (!in) return on_dst_writable(d, up, res);
  pump(d, up);
}

void SpliceRelay::relay_in(Direction& d, bool up) {
  if (d.spliced) return pump(d, up);
  buffer_recv(d, up);
}

int SpliceRelay::src_fd(bool up) const { return c_.fd(up ? Side::client : Side::target); }
int SpliceRelay::dst_fd(bool up) const { return c_.fd(up ? Side::target : Side::client); }

void SpliceRelay::poll(Op op, int fd, unsigned events) {
  io_uring_sqe* s = c_.worker().sqe();
  io_uring_prep_poll_add(s, fd, events);
  c_.submit(s, op);
}

void SpliceRelay::pass_eof(Direction& d, bool up) {
  // EOF is passed on as a half-close. When the other direction is already done the tunnel
  // ends here and closing the socket sends the same FIN: one syscall less per connection.
  Direction& other = up ? down_ : up_;
  if (!other.done) shutdown(dst_fd(up), SHUT_WR);
  direction_done(d);
}

void SpliceRelay::direction_done(Direction& d) {
  d.done = true;
  if (up_.done && down_.done) c_.finish(Result::ok);
}

void SpliceRelay::retry() {
  if (up_.wants_pipe || up_.throttled) {
    up_.wants_pipe = up_.throttled = false;
    relay_in(up_, true);
  }
  if (c_.closed()) return;
  if (down_.wants_pipe || down_.throttled) {
    down_.wants_pipe = down_.throttled = false;
    relay_in(down_, false);
  }
}

void SpliceRelay::release() {
  PipePool& pipes = c_.worker().pipes();
  for (Direction* d : {&up_, &down_}) {
    // A buffer still being sent is given back when that send's completion arrives (reclaim).
    if (d->buf >= 0 && !c_.in_flight(d == &up_ ? Op::up_out : Op::down_out)) buffer_release(*d);
    if (!d->pipe) continue;
    if (d->in_pipe)
      pipes.discard(d->pipe);
    else
      pipes.release(d->pipe);
    d->pipe = nullptr;
  }
}

void SpliceRelay::reclaim(Op op) {
  // The send that held a buffer when the tunnel ended.
  if (op == Op::up_out) buffer_release(up_);
  if (op == Op::down_out) buffer_release(down_);
}

void SpliceRelay::pump(Direction& d, bool up) {
  if (d.done || c_.closed()) return;
  Worker& w = c_.worker();
  const int src = src_fd(up);
  const int dst = dst_fd(up);
  const Op in = up ? Op::up_in : Op::down_in;
  const Op out = up ? Op::up_out : Op::down_out;
  bool drained_src = false;  // last read was short: the socket had no more queued

  for (int round = 0; round < rounds_per_event; ++round) {
    if (d.in_pipe > 0) {
      ssize_t n = splice(d.pipe->rd, nullptr, dst, nullptr, d.in_pipe, splice_flags);
      if (n < 0) {
        if (errno == EAGAIN) return poll(out, dst, POLLOUT);
        return end_tunnel_on_error(c_, errno);
      }
      d.in_pipe -= static_cast<uint32_t>(n);
      up ? c_.count_up(static_cast<uint64_t>(n)) : c_.count_down(static_cast<uint64_t>(n));
      if (d.in_pipe > 0) return poll(out, dst, POLLOUT);  // dst's buffer is full
    }
    if (d.eof) {
      if (d.pipe) w.pipes().release(d.pipe);
      d.pipe = nullptr;
      return pass_eof(d, up);
    }
    if (drained_src) break;
    if (!d.pipe) {
      d.pipe = w.pipes().acquire();
      if (!d.pipe) {
        d.wants_pipe = true;
        return w.wait_for_pipe(&c_);
      }
    }
    size_t want = static_cast<size_t>(d.pipe->size);
    if (c_.bandwidth_capped()) {
      // The user's cap holds across all their tunnels and workers; at it, this direction
      // waits for the next tick. Below it, bytes still never leave the kernel.
      size_t allowed = c_.bandwidth_allowance(up, want);
      if (allowed == 0) {
        w.pipes().release(d.pipe);
        d.pipe = nullptr;
        d.throttled = true;
        return w.wait_for_pipe(&c_);
      }
      want = std::min(want, allowed);
    }
    ssize_t n = splice(src, nullptr, d.pipe->wr, nullptr, want, splice_flags);
    if (n > 0) {
      d.in_pipe = static_cast<uint32_t>(n);
      c_.bandwidth_consume(up, static_cast<size_t>(n));
      drained_src = static_cast<size_t>(n) < want;
      if (!drained_src) d.on_loan = false;  // bulk: splice for good
      c_.touch();
      continue;
    }
    if (n == 0) {
      d.eof = true;
      continue;
    }
    if (errno == EAGAIN) break;
    return end_tunnel_on_error(c_, errno);
  }
  // This event had its share, or the source is drained. Bytes still in the pipe must not wait
  // for more input (the peer may be waiting for them): resume when dst can take them.
  if (d.in_pipe > 0) return poll(out, dst, POLLOUT);
  if (d.pipe) {
    w.pipes().release(d.pipe);
    d.pipe = nullptr;
  }
  if (d.on_loan && w.buffers()->has_free()) {
    // Idle, and the pool that ran dry has room again: small messages go back to buffers.
    d.on_loan = false;
    d.spliced = false;
    return buffer_recv(d, up);
  }
  poll(in, src, POLLIN);
}

// io_uring reports EPOLLRDHUP whatever a poll asked for. Once dst's peer has half-closed (an
// HTTP/1.0-style client that shut its side after the request, say), a POLLOUT wait completes
// at once even while dst is full, and polling again would spin. There, the pipe's first bytes
// are read out and sent with IORING_OP_SEND, whose own wait copes with a half-closed peer;
// when that send is done, dst has room and splicing resumes. Order is kept: the rest of the
// pipe goes only after them.
void SpliceRelay::on_dst_writable(Direction& d, bool up, int res) {
  if (d.nudge_sent < d.nudge_len) {  // a nudge send completed; res is bytes sent
    if (res == 0) return end_tunnel_on_error(c_, EIO);
    d.nudge_sent += static_cast<uint32_t>(res);
    up ? c_.count_up(static_cast<uint64_t>(res)) : c_.count_down(static_cast<uint64_t>(res));
    if (d.nudge_sent < d.nudge_len) return nudge_send(d, up);
    d.nudge_len = d.nudge_sent = 0;
    return pump(d, up);
  }
  if (res & (POLLOUT | POLLERR | POLLHUP) || d.in_pipe == 0) return pump(d, up);
  constexpr uint32_t nudge_cap = 4096;
  if (!d.nudge) d.nudge = std::make_unique_for_overwrite<char[]>(nudge_cap);
  ssize_t n = read(d.pipe->rd, d.nudge.get(), std::min(d.in_pipe, nudge_cap));
  if (n <= 0) return end_tunnel_on_error(c_, n < 0 ? errno : EIO);
  d.in_pipe -= static_cast<uint32_t>(n);
  d.nudge_len = static_cast<uint32_t>(n);
  d.nudge_sent = 0;
  nudge_send(d, up);
}

void SpliceRelay::nudge_send(Direction& d, bool up) {
  io_uring_sqe* s = c_.worker().sqe();
  io_uring_prep_send(s, dst_fd(up), d.nudge.get() + d.nudge_sent, d.nudge_len - d.nudge_sent,
                     MSG_NOSIGNAL);
  c_.submit(s, up ? Op::up_out : Op::down_out);
}

}  // namespace up
