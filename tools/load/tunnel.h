#pragma once
// The client's end of a tunnel: a socket, with TLS over it when --tls, and the VLESS response
// header still to strip from the bytes coming back. send/recv behave like send(2)/recv(2) on
// the socket (blocking or not, as the socket is): >0 bytes, 0 at EOF, -1 with errno (EAGAIN to
// wait; EPROTO for a TLS failure). Without --tls and VLESS they are exactly send/recv.
#include <openssl/ssl.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <deque>
#include <cstdint>
#include <mutex>
#include <string>

#include "common.h"

namespace uload {

// --tls: one client context for the run. The client verifies nothing (the bench's certificate
// is self-signed) and offers TLS 1.3 with AES-128-GCM only, so every server negotiates the same
// cipher and the comparison is of the servers. With --tls-resume each new connection offers a
// session (ticket) the servers handed out, each used once as RFC 8446 asks of clients (OpenSSL
// servers turn down about a fifth of tickets offered by several connections at once); with none
// in store the handshake is a full one, and its tickets refill the store.
class TlsClient {
 public:
  TlsClient() = default;
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // Nothing to do without --tls. False with err when OpenSSL cannot make the context.
  bool init(const Options& o, std::string& err);
  bool enabled() const { return ctx_ != nullptr; }
  // A client SSL on fd (connect state), with a stored session when resuming and resume.
  SSL* make(int fd, bool resume = true);
  // Counts a completed handshake (full or resumed) and remembers what was negotiated.
  void handshaken(SSL* ssl);
  void reset_counts() { full_ = 0; resumed_ = 0; }
  size_t sessions() const;  // sessions in store
  // tls_handshakes, tls_resumed, tls_version, tls_cipher (only with --tls).
  void report(Result& r) const;
  std::string summary() const;  // ", TLS 1.3 ..., 12/12 resumed" or ""

 private:
  static int on_new_session(SSL* ssl, SSL_SESSION* sess);
  SSL_CTX* ctx_ = nullptr;
  bool resume_ = false;
  std::string sni_;
  mutable std::mutex mu_;
  std::deque<SSL_SESSION*> sessions_;  // owned, newest last
  std::string version_, cipher_;
  std::atomic<uint64_t> full_{0}, resumed_{0};
};

// The VLESS response header (version 0, addons length, addons) in front of the first bytes back.
struct VlessReply {
  enum class State { none, version, addons_len, addons } state = State::none;
  size_t addons_left = 0;
  bool bad = false;
  void expect() { state = State::version; addons_left = 0; bad = false; }
  bool pending() const { return state != State::none; }
  // Consumes header bytes from the front of p; returns how many.
  size_t feed(const uint8_t* p, size_t n);
};

struct Tunnel {
  int fd = -1;
  SSL* ssl = nullptr;
  VlessReply vless;

  ssize_t send(const void* p, size_t n);
  ssize_t recv(void* p, size_t n);
  // Blocking TLS: sends close_notify, then the TCP FIN (the upload's end of data).
  void shutdown_write();
  void close();
};

// Maps an SSL_read/SSL_write/SSL_connect result to the send(2) convention above.
ssize_t tls_result(SSL* ssl, int r);

}  // namespace uload
