#include "upstream/tls_layer.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>

namespace up {

TlsLayer::~TlsLayer() {
  if (!ssl_) return;
  // SSL_free of an established connection that has not sent close_notify marks its session
  // not resumable (TLS 1.0's rule; TLS 1.1+ lets such a session be resumed). A client's
  // session is shared by every connection that resumed it (the worker keeps one per upstream
  // or gateway), so one tunnel that ended with a reset or a peer's close would cost the next
  // connection a full handshake. Fatal alerts still invalidate it (OpenSSL does that itself).
  if (!SSL_is_server(ssl_)) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);  // frees the BIOs too
}

void configure_client_ssl(SSL* ssl, SSL_CTX* ctx, const std::string& server_name) {
  if (server_name.empty()) return;
  unsigned char ip[16];
  bool literal = inet_pton(AF_INET, server_name.c_str(), ip) == 1 ||
                 inet_pton(AF_INET6, server_name.c_str(), ip) == 1;
  bool verify = SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER;
  if (literal) {
    // No SNI for addresses (RFC 6066); the certificate must carry the IP in a SAN.
    if (verify) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, server_name.c_str());
    if (verify) SSL_set1_host(ssl, server_name.c_str());
  }
}

bool TlsLayer::start(SSL_CTX* ctx, const std::string& server_name, SSL_SESSION* resume) {
  if (!attach(ctx)) return false;
  SSL_set_connect_state(ssl_);
  configure_client_ssl(ssl_, ctx, server_name);
  if (resume) SSL_set_session(ssl_, resume);
  return true;
}

bool TlsLayer::start_server(SSL_CTX* ctx) {
  if (!attach(ctx)) return false;
  SSL_set_accept_state(ssl_);
  return true;
}

BIO_METHOD* TlsLayer::bio_method() {
  // One method for every layer on every thread; made once (thread-safe static init).
  static BIO_METHOD* m = [] {
    BIO_METHOD* b = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uringproxy ring");
    if (b && BIO_meth_set_read(b, bio_read) == 1 && BIO_meth_set_write(b, bio_write) == 1 &&
        BIO_meth_set_ctrl(b, bio_ctrl) == 1)
      return b;
    BIO_meth_free(b);
    return static_cast<BIO_METHOD*>(nullptr);
  }();
  return m;
}

bool TlsLayer::attach(SSL_CTX* ctx) {
  BIO_METHOD* m = bio_method();
  if (!m) return false;
  ssl_ = SSL_new(ctx);
  if (!ssl_) return false;
  BIO* bio = BIO_new(m);
  if (!bio) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    return false;
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: the SSL owns it
  return true;
}

int TlsLayer::bio_read(BIO* b, char* buf, int len) {
  auto* self = static_cast<TlsLayer*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (self->in_.empty()) {
    // Nothing fed: "wait" (the caller reads the socket), also after EOF, which read() and
    // handshake() judge themselves.
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = std::min(self->in_.size(), static_cast<size_t>(len));
  std::memcpy(buf, self->in_.data(), n);
  self->in_.remove_prefix(n);
  return static_cast<int>(n);
}

int TlsLayer::bio_write(BIO* b, const char* buf, int len) {
  auto* self = static_cast<TlsLayer*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  self->next_.append(buf, static_cast<size_t>(len));
  return len;
}

long TlsLayer::bio_ctrl(BIO* b, int cmd, long, void*) {
  auto* self = static_cast<TlsLayer*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;  // the ring sends what was written
    case BIO_CTRL_PENDING: return static_cast<long>(self->in_.size());
    case BIO_CTRL_WPENDING:
      return static_cast<long>(self->out_.size() - self->out_off_ + self->next_.size());
    default: return 0;
  }
}

TlsLayer::Step TlsLayer::handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) return Step::done;
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ && !eof_) return Step::want_read;
  last_error_ = ERR_peek_last_error();
  return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_WANT_READ && eof_) ? Step::closed
                                                                          : Step::error;
}

bool TlsLayer::write(const char* data, size_t len) {
  ERR_clear_error();
  size_t done = 0;
  int r = SSL_write_ex(ssl_, data, len, &done);
  return r == 1 && done == len;
}

int TlsLayer::read(char* buf, size_t cap) {
  ERR_clear_error();
  // SSL_read gives one record at most: go on while the buffer has room and records are here,
  // so a large buffer takes several (the end or an error shows on the next call).
  size_t total = 0, n = 0;
  while (total < cap && SSL_read_ex(ssl_, buf + total, cap - total, &n) == 1) total += n;
  if (total > 0) {
    ERR_clear_error();
    return static_cast<int>(total);
  }
  int e = SSL_get_error(ssl_, 0);
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  if (e == SSL_ERROR_WANT_READ) return eof_ ? 0 : -1;
  last_error_ = ERR_peek_last_error();
  return -2;
}

std::string_view TlsLayer::out_begin() {
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
    out_.swap(next_);  // both keep their capacity: no allocation once warm
  }
  return std::string_view(out_).substr(out_off_);
}

std::string TlsLayer::error_text() const {
  long v = ssl_ ? SSL_get_verify_result(ssl_) : X509_V_OK;
  if (v != X509_V_OK) return std::string("certificate: ") + X509_verify_cert_error_string(v);
  if (last_error_) {
    char buf[256];
    ERR_error_string_n(last_error_, buf, sizeof buf);
    return buf;
  }
  return "TLS handshake failed";
}

std::shared_ptr<SSL_CTX> make_client_tls_context(bool verify, const std::string& ca_file,
                                                 std::string& err) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    err = "SSL_CTX_new failed";
    return nullptr;
  }
  std::shared_ptr<SSL_CTX> holder(ctx, SSL_CTX_free);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Sessions are kept by the caller (per worker, per upstream) for resumption.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                             : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
    if (ok != 1) {
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      err = (ca_file.empty() ? std::string("system trust store") : ca_file) + ": " + buf;
      return nullptr;
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return holder;
}

}  // namespace up
