#include "upstream/tls_layer.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

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

bool TlsLayer::attach(SSL_CTX* ctx) {
  ssl_ = SSL_new(ctx);
  if (!ssl_) return false;
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (!in_ || !out_) {
    BIO_free(in_);
    BIO_free(out_);
    in_ = out_ = nullptr;
    return false;
  }
  BIO_set_mem_eof_return(in_, -1);  // empty input means "wait", not EOF
  SSL_set_bio(ssl_, in_, out_);
  return true;
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
  size_t n = 0;
  if (SSL_read_ex(ssl_, buf, cap, &n) == 1) return static_cast<int>(n);
  int e = SSL_get_error(ssl_, 0);
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  if (e == SSL_ERROR_WANT_READ) return eof_ ? 0 : -1;
  last_error_ = ERR_peek_last_error();
  return -2;
}

void TlsLayer::feed(const char* data, size_t len) { BIO_write(in_, data, static_cast<int>(len)); }

size_t TlsLayer::pending_out() const { return BIO_ctrl_pending(out_); }

size_t TlsLayer::take_out(char* buf, size_t cap) {
  int n = BIO_read(out_, buf, static_cast<int>(cap));
  return n > 0 ? static_cast<size_t>(n) : 0;
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
