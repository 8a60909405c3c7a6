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
#include "relay/splice_relay.h"

namespace up {

void SpliceRelay::buffer_recv(Direction& d, bool up) {
  Worker& w = c_.worker();
  d.buf_asked = w.buffers()->buffer_size();
  if (c_.bandwidth_capped()) {
    size_t allowed = c_.bandwidth_allowance(up, d.buf_asked);
    if (allowed == 0) {  // at the cap: wait for the next tick (retry)
      d.throttled = true;
      return w.wait_for_pipe(&c_);
    }
    d.buf_asked = static_cast<uint32_t>(std::min<size_t>(d.buf_asked, allowed));
  }
  io_uring_sqe* s = w.sqe();
  io_uring_prep_recv(s, src_fd(up), nullptr, d.buf_asked, 0);
  poll_first_if(s, d.drained);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = BufferRing::group;
  c_.submit(s, up ? Op::up_in : Op::down_in);
}

void SpliceRelay::buffer_send(Direction& d, bool up) {
  io_uring_sqe* s = c_.worker().sqe();
  const char* data = c_.worker().buffers()->data(static_cast<uint16_t>(d.buf)) + d.buf_sent;
  io_uring_prep_send(s, dst_fd(up), data, d.buf_len - d.buf_sent, MSG_NOSIGNAL);
  c_.submit(s, up ? Op::up_out : Op::down_out);
}

void SpliceRelay::buffer_on_recv(Direction& d, bool up, int res, uint32_t flags) {
  BufferRing& bufs = *c_.worker().buffers();
  if (flags & IORING_CQE_F_BUFFER) bufs.taken();
  if (res <= 0 && (flags & IORING_CQE_F_BUFFER))  // a buffer with no bytes: give it back
    bufs.put(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));
  if (res == -ENOBUFS) {  // every buffer of this worker is in flight: splice needs none
    d.spliced = true;
    d.on_loan = true;
    return pump(d, up);
  }
  if (res < 0) return end_tunnel_on_error(c_, -res);
  if (res == 0) return pass_eof(d, up);  // the tunnel ends when both directions are done
  d.drained = recv_emptied(c_.worker().ring_features(), flags);
  d.buf = static_cast<int32_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  d.buf_len = static_cast<uint32_t>(res);
  d.buf_sent = 0;
  d.bulk = d.buf_len == d.buf_asked && c_.worker().runtime().relay != Runtime::Relay::buffers;
  c_.bandwidth_consume(up, d.buf_len);
  c_.touch();
  buffer_send(d, up);
}

void SpliceRelay::buffer_on_sent(Direction& d, bool up, int res) {
  if (res < 0) {
    buffer_release(d);
    return end_tunnel_on_error(c_, -res);
  }
  d.buf_sent += static_cast<uint32_t>(res);
  up ? c_.count_up(static_cast<uint64_t>(res)) : c_.count_down(static_cast<uint64_t>(res));
  if (d.buf_sent < d.buf_len) return buffer_send(d, up);  // dst took part of it
  buffer_release(d);
  if (d.bulk) {
    d.spliced = true;
    return pump(d, up);
  }
  buffer_recv(d, up);
}

void SpliceRelay::buffer_release(Direction& d) {
  if (d.buf < 0) return;
  c_.worker().buffers()->put(static_cast<uint16_t>(d.buf));
  d.buf = -1;
}

}  // namespace up
