// The transport seam: each side of a connection (the client, the target) is plain TCP or TLS,
// and the layers above (protocol sessions, upstream handshakes, the copy relay, HTTP
// forwarding) send and receive plaintext through submit_send / submit_recv without knowing
// which. A TLS side is a TlsLayer on memory BIOs whose ciphertext moves with its own ring
// operations (client_tls_* / tls_*); nothing here blocks. Plaintext completions that need no
// ring operation are posted with Worker::defer, never delivered re-entrantly.
#include <errno.h>

#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/tls_io.h"
#include "core/worker.h"
#include "upstream/dialer.h"

namespace up {

namespace {
constexpr Op plain_send(Side s) { return s == Side::client ? Op::client_send : Op::target_send; }
constexpr Op plain_recv(Side s) { return s == Side::client ? Op::client_recv : Op::target_recv; }
constexpr Op cipher_send(Side s) { return s == Side::client ? Op::client_tls_send : Op::tls_send; }
constexpr Op cipher_recv(Side s) { return s == Side::client ? Op::client_tls_recv : Op::tls_recv; }
}  // namespace

void Connection::ring_send(Side s, const char* data, uint32_t len) {
  Op op = tls(s) ? cipher_send(s) : plain_send(s);
  io_uring_sqe* sqe = w_.sqe();
  io_uring_prep_send(sqe, fd(s), data, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, pack(this, op));
  mark(op);
}

void Connection::ring_recv(Side s, char* buf, uint32_t len) {
  Op op = tls(s) ? cipher_recv(s) : plain_recv(s);
  io_uring_sqe* sqe = w_.sqe();
  io_uring_prep_recv(sqe, fd(s), buf, len, 0);
  poll_first_if(sqe, recv_drained_[static_cast<int>(s)]);
  io_uring_sqe_set_data64(sqe, pack(this, op));
  mark(op);
}

void Connection::submit_send(Side s, const char* data, uint32_t len) {
  int i = static_cast<int>(s);
  send_ptr_[i] = data;
  send_left_[i] = len;
  TlsIo* t = tls(s);
  if (!t) return ring_send(s, data, len);
  // Completes (tls_flush) once its ciphertext has gone; no ring operation stands for it
  // until then, so nothing is marked in flight.
  if (!t->layer.write(data, len)) return defer_completion(plain_send(s), -EPROTO);
  t->upper_send = len;
  tls_flush(s);
}

void Connection::submit_recv(Side s, char* buf, uint32_t len) {
  TlsIo* t = tls(s);
  if (!t) return ring_recv(s, buf, len);
  t->upper_buf = buf;
  t->upper_cap = len;
  int n = t->layer.read(buf, len);
  if (n == -1) return tls_want_ciphertext(s);
  t->upper_buf = nullptr;
  defer_completion(plain_recv(s), n >= 0 ? n : -ECONNRESET);
}

void Connection::half_close(Side s) {
  if (TlsIo* t = tls(s)) {
    t->layer.shutdown();  // close_notify
    return tls_flush(s);
  }
  shutdown(fd(s), SHUT_WR);
}

void Connection::defer_completion(Op op, int res) {
  mark(op);  // keeps the connection alive until the worker delivers it
  w_.defer(this, op, res);
}

void Connection::tls_flush(Side s) {
  TlsIo& t = *tls(s);
  if (t.sending) return;
  std::string_view out = t.layer.out_begin();
  if (!out.empty()) {
    t.sending = true;
    return ring_send(s, out.data(), static_cast<uint32_t>(out.size()));
  }
  if (t.upper_send) {  // everything written so far is on the wire
    uint32_t n = t.upper_send;
    t.upper_send = 0;
    defer_completion(plain_send(s), static_cast<int>(n));
  }
}

void Connection::tls_want_ciphertext(Side s) {
  TlsIo& t = *tls(s);
  if (t.recving) return;
  t.recving = true;
  // The layer has taken every byte of the last receive (it asks for more only then).
  char* buf = t.in.next_receive();
  ring_recv(s, buf, t.in.cap());
}

void Connection::tls_on_ring_send(Side s, int res) {
  TlsIo& t = *tls(s);
  t.sending = false;
  if (res < 0) {
    if (t.handshaking) return tls_handshake_failed(s, "TLS send failed");
    return finish(Result::reset);
  }
  t.layer.out_sent(static_cast<size_t>(res));
  tls_flush(s);
}

void Connection::tls_on_ring_recv(Side s, int res) {
  TlsIo& t = *tls(s);
  t.recving = false;
  if (res < 0) {
    if (t.handshaking) return tls_handshake_failed(s, "TLS receive failed");
    if (t.upper_buf) {
      t.upper_buf = nullptr;
      return defer_completion(plain_recv(s), res);
    }
    return finish(Result::reset);
  }
  if (res == 0) {
    t.layer.feed_eof();
  } else {
    t.in.filled(static_cast<uint32_t>(res));
    t.layer.feed(t.in.data(), static_cast<size_t>(res));
  }
  if (t.handshaking) return tls_handshake_step(s);
  if (t.upper_buf) tls_deliver_read(s);
}

void Connection::tls_deliver_read(Side s) {
  TlsIo& t = *tls(s);
  int n = t.layer.read(t.upper_buf, t.upper_cap);
  tls_flush(s);  // reading may have produced alerts or key updates to send
  if (n == -1) return tls_want_ciphertext(s);
  t.upper_buf = nullptr;
  defer_completion(plain_recv(s), n >= 0 ? n : -ECONNRESET);
}

void Connection::tls_handshake_step(Side s) {
  TlsIo& t = *tls(s);
  TlsLayer::Step step = t.layer.handshake();
  tls_flush(s);
  switch (step) {
    case TlsLayer::Step::done:
      t.handshaking = false;
      if (s == Side::client) {
        w_.stats().tls_handshake.observe(monotonic_us() - t.started_us);
        count_tls_handshake(t.layer.resumed() ? "resumed" : "ok");
        return begin_session();
      }
      if (dialer_) dialer_->on_tls_done();  // an upstream's TLS: its own handshake next
      return;
    case TlsLayer::Step::want_read:
      return tls_want_ciphertext(s);
    case TlsLayer::Step::error:
    case TlsLayer::Step::closed: {
      std::string why = "TLS: " + t.layer.error_text();
      return tls_handshake_failed(s, why.c_str());
    }
  }
}

void Connection::tls_handshake_failed(Side s, const char* why) {
  if (s == Side::target && dialer_) return dialer_->on_tls_failed(why);
  // Agent mode: this end is the TLS client of its gateway, and the operator needs the why
  // (an untrusted certificate, a wrong server_name).
  if (agent_link_) UP_WARN("agent: TLS to the gateway failed: %s", why);
  // A client that does not complete TLS gets nothing in plaintext: the socket is closed.
  (void)why;  // the access log's result says it; a line per scanner probe would flood the log
  count_tls_handshake("failed");
  finish(Result::tls_failed);
}

void Connection::count_tls_handshake(const char* result) {
  std::string key = ctls_->listener;
  key += '\t';
  key += result;
  ++w_.stats().tls_handshakes[key];
}

}  // namespace up
