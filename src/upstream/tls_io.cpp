// Target I/O for the layers above (upstream handshake, copy relay, HTTP forwarding): plain
// sends and receives on the ring, or, when the route's upstream speaks TLS, plaintext through
// a TlsLayer whose ciphertext moves with tls_send / tls_recv operations. Plaintext completions
// that need no ring operation are posted with Worker::defer, never delivered re-entrantly.
#include <errno.h>

#include "core/connection.h"
#include "core/worker.h"
#include "upstream/upstream_session.h"

namespace up {

void Connection::ring_send_target(const char* data, uint32_t len) {
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_send(s, tfd_, data, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, pack(this, tls_ ? Op::tls_send : Op::target_send));
  mark(tls_ ? Op::tls_send : Op::target_send);
}

void Connection::ring_recv_target(char* buf, uint32_t len) {
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_recv(s, tfd_, buf, len, 0);
  io_uring_sqe_set_data64(s, pack(this, tls_ ? Op::tls_recv : Op::target_recv));
  mark(tls_ ? Op::tls_recv : Op::target_recv);
}

void Connection::submit_send_target(const char* data, uint32_t len) {
  send_ptr_[1] = data;
  send_left_[1] = len;
  if (!tls_) return ring_send_target(data, len);
  // Completes (tls_flush) once its ciphertext has gone; no ring operation stands for it
  // until then, so nothing is marked in flight.
  if (!tls_->layer.write(data, len)) return defer_completion(Op::target_send, -EPROTO);
  tls_->upper_send = len;
  tls_flush();
}

void Connection::submit_recv_target(char* buf, uint32_t len) {
  if (!tls_) return ring_recv_target(buf, len);
  tls_->upper_buf = buf;
  tls_->upper_cap = len;
  int n = tls_->layer.read(buf, len);
  if (n == -1) return tls_want_ciphertext();
  tls_->upper_buf = nullptr;
  defer_completion(Op::target_recv, n >= 0 ? n : -ECONNRESET);
}

void Connection::defer_completion(Op op, int res) {
  mark(op);  // keeps the connection alive until the worker delivers it
  w_.defer(this, op, res);
}

void Connection::tls_flush() {
  TlsIo& t = *tls_;
  if (t.sending) return;
  if (t.out_off == t.out_len) {
    t.out_off = 0;
    t.out_len = static_cast<uint32_t>(t.layer.take_out(t.out.get(), TlsIo::buf_cap));
  }
  if (t.out_len > t.out_off) {
    t.sending = true;
    return ring_send_target(t.out.get() + t.out_off, t.out_len - t.out_off);
  }
  if (t.upper_send) {  // everything written so far is on the wire
    uint32_t n = t.upper_send;
    t.upper_send = 0;
    defer_completion(Op::target_send, static_cast<int>(n));
  }
}

void Connection::tls_want_ciphertext() {
  if (tls_->recving) return;
  tls_->recving = true;
  ring_recv_target(tls_->in.get(), TlsIo::buf_cap);
}

void Connection::tls_on_ring_send(int res) {
  TlsIo& t = *tls_;
  t.sending = false;
  if (res < 0) {
    if (t.handshaking && upstream_)
      return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                     "TLS send failed");
    return finish(Result::reset);
  }
  t.out_off += static_cast<uint32_t>(res);
  tls_flush();
}

void Connection::tls_on_ring_recv(int res) {
  TlsIo& t = *tls_;
  t.recving = false;
  if (res < 0) {
    if (t.handshaking && upstream_)
      return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true,
                                     "TLS receive failed");
    if (t.upper_buf) {
      t.upper_buf = nullptr;
      return defer_completion(Op::target_recv, res);
    }
    return finish(Result::reset);
  }
  if (res == 0)
    t.layer.feed_eof();
  else
    t.layer.feed(t.in.get(), static_cast<size_t>(res));
  if (t.handshaking) return tls_handshake_step();
  if (t.upper_buf) tls_deliver_read();
}

void Connection::tls_deliver_read() {
  TlsIo& t = *tls_;
  int n = t.layer.read(t.upper_buf, t.upper_cap);
  tls_flush();  // reading may have produced alerts or key updates to send
  if (n == -1) return tls_want_ciphertext();
  t.upper_buf = nullptr;
  defer_completion(Op::target_recv, n >= 0 ? n : -ECONNRESET);
}

void Connection::tls_handshake_step() {
  TlsIo& t = *tls_;
  TlsLayer::Step step = t.layer.handshake();
  tls_flush();
  switch (step) {
    case TlsLayer::Step::done:
      t.handshaking = false;
      upstream_->phase = UpstreamSession::Phase::greeting;
      return upstream_handshake_step();
    case TlsLayer::Step::want_read:
      return tls_want_ciphertext();
    case TlsLayer::Step::error:
    case TlsLayer::Step::closed: {
      std::string why = "TLS: " + t.layer.error_text();
      return upstream_attempt_failed({Result::upstream_error, 0x01, 502}, true, why.c_str());
    }
  }
}

}  // namespace up
