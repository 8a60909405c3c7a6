#include "relay/copy_relay.h"

#include <errno.h>
#include <sys/socket.h>

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
    submit_recv_client(copy_->up.get(), CopyRelay::buf_cap);
  if (upstream_ && !upstream_->leftover.empty())
    submit_send_client(upstream_->leftover.data(),
                       static_cast<uint32_t>(upstream_->leftover.size()));
  else
    submit_recv_target(copy_->down.get(), CopyRelay::buf_cap);
}

void Connection::copy_on_client_recv(int res) {
  if (res < 0) return relay_error(-res);
  if (res == 0) {
    copy_->up_done = true;
    if (tls_) {
      tls_->layer.shutdown();  // close_notify
      tls_flush();
    } else {
      shutdown(tfd_, SHUT_WR);
    }
    return maybe_finish_relay();
  }
  count_up(static_cast<uint64_t>(res));
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  submit_send_target(copy_->up.get(), static_cast<uint32_t>(res));
}

void Connection::copy_on_target_recv(int res) {
  if (res < 0) return relay_error(-res);
  if (res == 0) {
    copy_->down_done = true;
    shutdown(cfd_, SHUT_WR);
    return maybe_finish_relay();
  }
  count_down(static_cast<uint64_t>(res));
  set_deadline_in(w_.snapshot().config.limits.idle_timeout_ms);
  submit_send_client(copy_->down.get(), static_cast<uint32_t>(res));
}

void Connection::copy_on_sent(bool to_client) {
  if (to_client) {
    upstream_.reset();  // its leftover (if that was it) is delivered
    return submit_recv_target(copy_->down.get(), CopyRelay::buf_cap);
  }
  drop_handshake_buffer();  // pipelined bytes (if that was it) are delivered
  submit_recv_client(copy_->up.get(), CopyRelay::buf_cap);
}

}  // namespace up
