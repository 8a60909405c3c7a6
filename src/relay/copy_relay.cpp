#include "relay/copy_relay.h"

#include <errno.h>
#include <sys/socket.h>

#include <algorithm>

#include "core/connection.h"
#include "core/worker.h"
#include "upstream/upstream_session.h"

namespace up {

void Connection::start_copy_relay() {
  state_ = State::relaying;
  copy_ = std::make_unique<CopyRelay>();
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  if (hs_len_ > 0)
    submit_send_target(hs_.get(), hs_len_);  // pipelined client bytes first
  else
    copy_read(true);
  if (upstream_ && !upstream_->leftover.empty())
    submit_send_client(upstream_->leftover.data(),
                       static_cast<uint32_t>(upstream_->leftover.size()));
  else
    copy_read(false);
}

void Connection::copy_on_client_recv(int res) {
  if (res < 0) return relay_error(-res);
  if (res == 0) {
    copy_->up_done = true;
    half_close(Side::target);
    return maybe_finish_relay();
  }
  count_up(static_cast<uint64_t>(res));
  bandwidth_consume(true, static_cast<size_t>(res));
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  submit_send_target(copy_->up.get(), static_cast<uint32_t>(res));
}

void Connection::copy_on_target_recv(int res) {
  if (res < 0) return relay_error(-res);
  if (res == 0) {
    copy_->down_done = true;
    half_close(Side::client);
    return maybe_finish_relay();
  }
  count_down(static_cast<uint64_t>(res));
  bandwidth_consume(false, static_cast<size_t>(res));
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  submit_send_client(copy_->down.get(), static_cast<uint32_t>(res));
}

void Connection::copy_on_sent(bool to_client) {
  if (to_client) {
    upstream_.reset();  // its leftover (if that was it) is delivered
    return copy_read(false);
  }
  drop_handshake_buffer();  // pipelined bytes (if that was it) are delivered
  copy_read(true);
}

// The next read of one direction, as much as the user's bandwidth cap allows now.
void Connection::copy_read(bool up) {
  uint32_t want = CopyRelay::buf_cap;
  if (bandwidth_bps_) {
    size_t allowed = bandwidth_allowance(up, want);
    if (allowed == 0) {
      (up ? copy_->up_throttled : copy_->down_throttled) = true;
      return w_.wait_for_pipe(this);  // retried on the next tick
    }
    want = static_cast<uint32_t>(std::min<size_t>(want, allowed));
  }
  if (up)
    submit_recv_client(copy_->up.get(), want);
  else
    submit_recv_target(copy_->down.get(), want);
}

void Connection::copy_retry() {
  if (copy_->up_throttled) {
    copy_->up_throttled = false;
    copy_read(true);
  }
  if (copy_->down_throttled && state_ != State::closed) {
    copy_->down_throttled = false;
    copy_read(false);
  }
}

}  // namespace up
