#include "relay/copy_relay.h"

#include <algorithm>

#include "core/connection.h"
#include "core/worker.h"

namespace up {

CopyRelay::CopyRelay(Connection& c, std::string to_target, std::string to_client)
    : c_(c), to_target_(std::move(to_target)), to_client_(std::move(to_client)) {}

void CopyRelay::start() {
  if (!to_target_.empty())  // pipelined client bytes first
    c_.submit_send(Side::target, to_target_.data(), static_cast<uint32_t>(to_target_.size()));
  else
    read(true);
  if (c_.closed()) return;
  if (!to_client_.empty())
    c_.submit_send(Side::client, to_client_.data(), static_cast<uint32_t>(to_client_.size()));
  else
    read(false);
}

void CopyRelay::on_recv(Side s, int res) {
  bool up = s == Side::client;
  if (res < 0) return end_tunnel_on_error(c_, -res);
  if (res == 0) {
    (up ? up_done_ : down_done_) = true;
    c_.half_close(up ? Side::target : Side::client);
    if (up_done_ && down_done_) c_.finish(Result::ok);
    return;
  }
  up ? c_.count_up(static_cast<uint64_t>(res)) : c_.count_down(static_cast<uint64_t>(res));
  c_.bandwidth_consume(up, static_cast<size_t>(res));
  c_.touch();
  GrowingBuffer& b = up ? up_ : down_;
  b.filled(static_cast<uint32_t>(res));
  c_.submit_send(up ? Side::target : Side::client, b.data(), static_cast<uint32_t>(res));
}

void CopyRelay::on_sent(Side s) {
  // The first bytes (if that was them) are delivered: counted as tunnel bytes like any other.
  if (s == Side::client) {
    c_.count_down(to_client_.size());
    to_client_ = std::string();
    return read(false);
  }
  c_.count_up(to_target_.size());
  to_target_ = std::string();
  read(true);
}

void CopyRelay::read(bool up) {
  GrowingBuffer& b = up ? up_ : down_;
  char* buf = b.next_receive();  // its last bytes have been sent: on_sent brought us here
  uint32_t want = b.cap();
  if (c_.bandwidth_capped()) {
    size_t allowed = c_.bandwidth_allowance(up, want);
    if (allowed == 0) {
      (up ? up_throttled_ : down_throttled_) = true;
      return c_.worker().wait_for_pipe(&c_);  // retried on the next tick
    }
    want = static_cast<uint32_t>(std::min<size_t>(want, allowed));
  }
  c_.submit_recv(up ? Side::client : Side::target, buf, want);
}

void CopyRelay::retry() {
  if (up_throttled_) {
    up_throttled_ = false;
    read(true);
  }
  if (down_throttled_ && !c_.closed()) {
    down_throttled_ = false;
    read(false);
  }
}

}  // namespace up
