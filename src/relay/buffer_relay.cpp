// The small-message path of a plain tunnel: recv into a provided buffer, send it on, recv
// again; all of it on the ring, so a request/response exchange costs no syscall of its own
// (readiness poll plus two splice(2) calls through a pipe cost three). A read that fills its
// buffer (or all that a bandwidth cap allowed) means bulk, and that direction moves to splice
// (relay/splice_relay.cpp) for good. One that finds the worker's buffers all in use (ENOBUFS)
// splices "on loan": when it is idle again and the pool has room, it comes back here.
//
// A buffer is held from the recv that fills it until the send that empties it completes;
// an idle tunnel holds none. After finish(), completions still give their buffers back.
#include <errno.h>
#include <sys/socket.h>

#include <algorithm>

#include "core/connection.h"
#include "core/worker.h"

namespace up {

void Connection::buffer_recv(Direction& d, bool up) {
  d.buf_asked = w_.buffers()->buffer_size();
  if (bandwidth_bps_) {
    size_t allowed = bandwidth_allowance(up, d.buf_asked);
    if (allowed == 0) {  // at the cap: wait for the next tick (retry_pipe)
      d.throttled = true;
      return w_.wait_for_pipe(this);
    }
    d.buf_asked = static_cast<uint32_t>(std::min<size_t>(d.buf_asked, allowed));
  }
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_recv(s, up ? cfd_ : tfd_, nullptr, d.buf_asked, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = BufferRing::group;
  Op op = up ? Op::up_in : Op::down_in;
  io_uring_sqe_set_data64(s, pack(this, op));
  mark(op);
}

void Connection::buffer_send(Direction& d, bool up) {
  io_uring_sqe* s = w_.sqe();
  const char* data = w_.buffers()->data(static_cast<uint16_t>(d.buf)) + d.buf_sent;
  io_uring_prep_send(s, up ? tfd_ : cfd_, data, d.buf_len - d.buf_sent, MSG_NOSIGNAL);
  Op op = up ? Op::up_out : Op::down_out;
  io_uring_sqe_set_data64(s, pack(this, op));
  mark(op);
}

void Connection::buffer_on_recv(Direction& d, bool up, int res, uint32_t flags) {
  if (flags & IORING_CQE_F_BUFFER) w_.buffers()->taken();
  if (res <= 0 && (flags & IORING_CQE_F_BUFFER))  // a buffer with no bytes: give it back
    w_.buffers()->put(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));
  if (res == -ENOBUFS) {  // every buffer of this worker is in flight: splice needs none
    d.spliced = true;
    d.on_loan = true;
    return pump(d, up);
  }
  if (res < 0) return relay_error(-res);
  if (res == 0) {  // EOF: pass it on as a half-close; the tunnel ends when both are done
    shutdown(up ? tfd_ : cfd_, SHUT_WR);
    d.done = true;
    return maybe_finish_relay();
  }
  d.buf = static_cast<int32_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  d.buf_len = static_cast<uint32_t>(res);
  d.buf_sent = 0;
  d.bulk = d.buf_len == d.buf_asked && w_.runtime().relay != Runtime::Relay::buffers;
  bandwidth_consume(up, d.buf_len);
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  buffer_send(d, up);
}

void Connection::buffer_on_sent(Direction& d, bool up, int res) {
  if (res < 0) {
    buffer_release(d);
    return relay_error(-res);
  }
  d.buf_sent += static_cast<uint32_t>(res);
  up ? count_up(static_cast<uint64_t>(res)) : count_down(static_cast<uint64_t>(res));
  if (d.buf_sent < d.buf_len) return buffer_send(d, up);  // dst took part of it
  buffer_release(d);
  if (d.bulk) {
    d.spliced = true;
    return pump(d, up);
  }
  buffer_recv(d, up);
}

void Connection::buffer_release(Direction& d) {
  if (d.buf < 0) return;
  w_.buffers()->put(static_cast<uint16_t>(d.buf));
  d.buf = -1;
}

void Connection::buffer_reclaim(Op op, uint32_t flags) {
  // A recv that picked a buffer as it was being cancelled.
  if (flags & IORING_CQE_F_BUFFER) {
    w_.buffers()->taken();
    w_.buffers()->put(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));
    return;
  }
  // The send that held a buffer when the tunnel ended.
  if (op == Op::up_out) buffer_release(up_);
  if (op == Op::down_out) buffer_release(down_);
}

}  // namespace up
