#pragma once
// Client side of the proxy handshakes (SOCKS5 with RFC 1929 auth, HTTP CONNECT with Basic
// auth, the VLESS request header), as a step machine that never touches a socket: the caller
// sends what `pending()` holds and feeds what it receives. Used blocking (bulk, latency, idle)
// and from epoll (cps).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common.h"
#include "tunnel.h"

namespace uload {

class Handshake {
 public:
  enum class State { send, recv, done, failed };

  Handshake() = default;
  void start(const ProxySpec& proxy, const sockaddr_storage& target);

  State state() const { return state_; }
  // Bytes still to send in the current step.
  const uint8_t* pending() const {
    return reinterpret_cast<const uint8_t*>(out_.data()) + out_off_;
  }
  size_t pending_len() const { return out_.size() - out_off_; }
  void sent(size_t n);  // moves to recv once everything is out
  // Feeds received bytes; returns how many were consumed. Bytes after the final reply (none
  // are expected: the target speaks only after we do) are left to the caller.
  size_t feed(const uint8_t* p, size_t n);
  const char* error() const { return error_; }
  int reply_code() const { return reply_code_; }

 private:
  // VLESS has no reply to wait for: its response header comes with the first bytes back
  // (Tunnel strips it), so the step is done once the header is out.
  enum class Step { greeting, auth, request, http, vless, none };
  void begin_step(Step s);
  ProxyKind kind_ = ProxyKind::direct;
  const ProxySpec* proxy_ = nullptr;
  const sockaddr_storage* target_ = nullptr;
  State state_ = State::done;
  Step step_ = Step::none;
  std::string out_;
  size_t out_off_ = 0;
  std::string in_;
  const char* error_ = "";
  int reply_code_ = -1;
};

// Blocking helpers (sockets with SO_RCVTIMEO/SO_SNDTIMEO set by connect_blocking).
// Returns a connected fd with the tunnel established, or -1 with errs counted. Plain only.
int open_tunnel_blocking(const Options& o, Errors& errs);
// The same with TLS (when tls is enabled; resume: offer a stored session) and VLESS; t.fd < 0
// on failure, errs counted.
Tunnel open_tunnel_blocking(const Options& o, TlsClient& tls, Errors& errs, bool resume = true);
// A non-blocking TCP socket with TCP_NODELAY, connect() started. -1 on immediate failure.
int start_connect(const sockaddr_storage& addr, socklen_t len, int& err);
void set_nodelay(int fd);

// Base64 (for Basic auth).
std::string base64(const std::string& in);

}  // namespace uload
