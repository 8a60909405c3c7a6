#include "tunnel.h"

#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace uload {

namespace {
constexpr size_t kMaxSessions = 4096;  // the oldest go beyond this
}

TlsClient::~TlsClient() {
  for (SSL_SESSION* s : sessions_) SSL_SESSION_free(s);
  if (ctx_) SSL_CTX_free(ctx_);
}

bool TlsClient::init(const Options& o, std::string& err) {
  if (!o.tls) return true;
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) {
    err = "cannot create a TLS context";
    return false;
  }
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  // A peer that closes without close_notify (the target closed first) is a clean EOF here.
  SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (SSL_CTX_set_ciphersuites(ctx_, "TLS_AES_128_GCM_SHA256") != 1) {
    err = "cannot set the TLS 1.3 cipher suite";
    return false;
  }
  resume_ = o.tls_resume;
  sni_ = o.tls_sni;
  if (resume_) {
    // Sessions come to on_new_session (TLS 1.3 tickets arrive after the handshake); OpenSSL's
    // own client cache is not used.
    SSL_CTX_set_session_cache_mode(ctx_,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx_, on_new_session);
    SSL_CTX_set_app_data(ctx_, this);
  }
  return true;
}

int TlsClient::on_new_session(SSL* ssl, SSL_SESSION* sess) {
  auto* self = static_cast<TlsClient*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  std::lock_guard lk(self->mu_);
  self->sessions_.push_back(sess);
  if (self->sessions_.size() > kMaxSessions) {
    SSL_SESSION_free(self->sessions_.front());
    self->sessions_.pop_front();
  }
  return 1;  // we keep the reference
}

size_t TlsClient::sessions() const {
  std::lock_guard lk(mu_);
  return sessions_.size();
}

SSL* TlsClient::make(int fd, bool resume) {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  SSL_set_fd(ssl, fd);
  SSL_set_connect_state(ssl);
  if (!sni_.empty()) SSL_set_tlsext_host_name(ssl, sni_.c_str());
  if (resume_ && resume) {
    SSL_SESSION* sess = nullptr;
    {
      std::lock_guard lk(mu_);
      if (!sessions_.empty()) {
        sess = sessions_.back();
        sessions_.pop_back();
      }
    }
    if (sess) {
      SSL_set_session(ssl, sess);  // takes its own reference
      SSL_SESSION_free(sess);
    }
  }
  return ssl;
}

void TlsClient::handshaken(SSL* ssl) {
  if (SSL_session_reused(ssl)) resumed_++;
  else full_++;
  std::lock_guard lk(mu_);
  if (version_.empty()) {
    version_ = SSL_get_version(ssl);
    cipher_ = SSL_get_cipher_name(ssl);
  }
}

void TlsClient::report(Result& r) const {
  if (!ctx_) return;
  r.integer("tls_handshakes", (long long)(full_ + resumed_));
  r.integer("tls_resumed", (long long)resumed_.load());
  std::lock_guard lk(mu_);
  r.str("tls_version", version_);
  r.str("tls_cipher", cipher_);
}

std::string TlsClient::summary() const {
  if (!ctx_) return "";
  std::lock_guard lk(mu_);
  return ", " + version_ + " " + cipher_ + ", " + std::to_string(resumed_.load()) + "/" +
         std::to_string(full_ + resumed_) + " handshakes resumed";
}

size_t VlessReply::feed(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n && state != State::none) {
    switch (state) {
      case State::version:
        if (p[i++] != 0) { bad = true; state = State::none; return i; }
        state = State::addons_len;
        break;
      case State::addons_len:
        addons_left = p[i++];
        state = addons_left ? State::addons : State::none;
        break;
      case State::addons: {
        size_t take = n - i < addons_left ? n - i : addons_left;
        i += take;
        addons_left -= take;
        if (!addons_left) state = State::none;
        break;
      }
      case State::none:
        break;
    }
  }
  return i;
}

ssize_t tls_result(SSL* ssl, int r) {
  if (r > 0) return r;
  int e = SSL_get_error(ssl, r);
  int saved = errno;
  ERR_clear_error();
  switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;  // blocking sockets: SO_RCVTIMEO/SO_SNDTIMEO ran out
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      errno = saved ? saved : ECONNRESET;
      return -1;
    default:
      errno = EPROTO;
      return -1;
  }
}

ssize_t Tunnel::send(const void* p, size_t n) {
  if (!ssl) return ::send(fd, p, n, MSG_NOSIGNAL);
  if (n == 0) return 0;
  return tls_result(ssl, SSL_write(ssl, p, int(n > (1u << 30) ? (1u << 30) : n)));
}

ssize_t Tunnel::recv(void* p, size_t n) {
  for (;;) {
    ssize_t r = ssl ? tls_result(ssl, SSL_read(ssl, p, int(n > (1u << 30) ? (1u << 30) : n)))
                    : ::recv(fd, p, n, 0);
    if (r <= 0 || !vless.pending()) return r;
    auto* b = static_cast<uint8_t*>(p);
    size_t used = vless.feed(b, size_t(r));
    if (vless.bad) {
      errno = EPROTO;  // not a VLESS response: counted with the TLS failures
      return -1;
    }
    if (used < size_t(r)) {
      memmove(b, b + used, size_t(r) - used);
      return r - ssize_t(used);
    }
  }
}

void Tunnel::shutdown_write() {
  if (ssl) SSL_shutdown(ssl);
  ::shutdown(fd, SHUT_WR);
}

void Tunnel::close() {
  if (ssl) {
    // Marked shut down so OpenSSL keeps the session resumable after an abrupt close.
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl);
    ssl = nullptr;
  }
  if (fd >= 0) ::close(fd);
  fd = -1;
  vless = {};
}

}  // namespace uload
