#pragma once
// TLS with OpenSSL, as a client (to an upstream proxy) or a server (a TLS listener): this
// object never touches a socket. Its BIO reads ciphertext where the ring received it and
// collects what OpenSSL writes for the ring to send from (no memory BIOs: each of those cost a
// copy of every record and a clearing memset); the upper layers see plaintext
// (core/transport.cpp).
#include <openssl/ssl.h>

#include <cassert>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

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
  // Plaintext out (as many records as fit): >0 bytes, 0 on close_notify / EOF, -1 want more
  // ciphertext, -2 error.
  int read(char* buf, size_t cap);
  void shutdown() { SSL_shutdown(ssl_); }

  // Ciphertext from the socket, read in place: the bytes must stay where they are until the
  // layer has taken them all, which it has whenever handshake() or read() asks for more.
  void feed(const char* data, size_t len) {
    assert(in_.empty());  // the ring never reads over bytes the layer has not taken
    in_ = {data, len};
  }
  void feed_eof() { eof_ = true; }
  // Ciphertext for the socket. The view stays valid and unchanged until out_sent() has been
  // told of all of it: records the layer writes meanwhile (alerts, tickets, more data) queue
  // behind it, so the ring can send from it without a copy.
  std::string_view out_begin();
  void out_sent(size_t n) { out_off_ += n; }

  // A resumable session once the handshake is done (owned by the caller), or null.
  SSL_SESSION* session() const { return SSL_get1_session(ssl_); }
  bool resumed() const { return SSL_session_reused(ssl_) == 1; }
  // Why the handshake failed, for the log: the verify result or OpenSSL's error string.
  std::string error_text() const;

 private:
  bool attach(SSL_CTX* ctx);  // the SSL and its BIO (both directions)
  static BIO_METHOD* bio_method();
  static int bio_read(BIO* b, char* buf, int len);
  static int bio_write(BIO* b, const char* buf, int len);
  static long bio_ctrl(BIO* b, int cmd, long num, void* ptr);

  SSL* ssl_ = nullptr;
  std::string_view in_;  // ciphertext fed and not yet taken by OpenSSL
  std::string out_;      // ciphertext being sent: out_begin() to out_sent()
  size_t out_off_ = 0;   // how much of out_ has been sent
  std::string next_;     // ciphertext written meanwhile, sent after out_
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
