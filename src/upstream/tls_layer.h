#pragma once
// TLS with OpenSSL on memory BIOs, as a client (to an upstream proxy) or a server (a TLS
// listener): this object never touches a socket. The connection moves ciphertext between the
// socket (its ring) and these BIOs; the upper layers see plaintext (core/transport.cpp).
#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>

namespace up {

class TlsLayer {
 public:
  enum class Step : uint8_t { done, want_read, error, closed };

  TlsLayer() = default;
  ~TlsLayer();
  TlsLayer(const TlsLayer&) = delete;
  TlsLayer& operator=(const TlsLayer&) = delete;

  // Client mode with SNI and host-name verification (when the context verifies);
  // `resume` (may be null) is a session from an earlier connection to the same upstream.
  bool start(SSL_CTX* ctx, const std::string& server_name, SSL_SESSION* resume);
  // Server mode, for a TLS listener's client.
  bool start_server(SSL_CTX* ctx);

  Step handshake();
  // Plaintext in: always consumed whole (the write BIO grows). False on a fatal error.
  bool write(const char* data, size_t len);
  // Plaintext out: >0 bytes, 0 on close_notify / EOF, -1 want more ciphertext, -2 error.
  int read(char* buf, size_t cap);
  void shutdown() { SSL_shutdown(ssl_); }

  // Ciphertext from the socket.
  void feed(const char* data, size_t len);
  void feed_eof() { eof_ = true; }
  // Ciphertext for the socket.
  size_t pending_out() const;
  size_t take_out(char* buf, size_t cap);

  // A resumable session once the handshake is done (owned by the caller), or null.
  SSL_SESSION* session() const { return SSL_get1_session(ssl_); }
  bool resumed() const { return SSL_session_reused(ssl_) == 1; }
  // Why the handshake failed, for the log: the verify result or OpenSSL's error string.
  std::string error_text() const;

 private:
  bool attach(SSL_CTX* ctx);  // the SSL and its two memory BIOs

  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // socket -> SSL
  BIO* out_ = nullptr;  // SSL -> socket
  bool eof_ = false;
  unsigned long last_error_ = 0;
};

// SNI and certificate name (or IP) checks for a client connection to `server_name`.
void configure_client_ssl(SSL* ssl, SSL_CTX* ctx, const std::string& server_name);

// A client context for one upstream: TLS 1.2+, verification on unless verify is false, trust
// from ca_file or the system store. Returns null and sets err on failure.
std::shared_ptr<SSL_CTX> make_client_tls_context(bool verify, const std::string& ca_file,
                                                 std::string& err);

}  // namespace up
