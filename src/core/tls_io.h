#pragma once
// Plaintext-over-ciphertext bookkeeping for one TLS side of a connection (a TLS listener's
// client, or a socks5s / https upstream): the TlsLayer never touches a socket; the connection
// moves its ciphertext with the ring (core/transport.cpp).
#include <cstdint>
#include <memory>
#include <string>

#include "upstream/tls_layer.h"

namespace up {

struct TlsIo {
  TlsLayer layer;
  static constexpr uint32_t in_cap = 16 * 1024;
  // A full record (16 KiB of plaintext) plus its header and tag, so that a 16 KiB write goes
  // out in one send rather than a full buffer and a 22-byte tail.
  static constexpr uint32_t out_cap = 16 * 1024 + 512;
  std::unique_ptr<char[]> in{new char[in_cap]};    // ciphertext from the socket
  std::unique_ptr<char[]> out{new char[out_cap]};  // ciphertext to the socket
  uint32_t out_len = 0;
  uint32_t out_off = 0;
  bool sending = false;          // a ciphertext send is in flight
  bool recving = false;          // a ciphertext recv is in flight
  uint32_t upper_send = 0;       // plaintext bytes whose send completes once flushed
  char* upper_buf = nullptr;     // where a pending plaintext read goes
  uint32_t upper_cap = 0;
  bool handshaking = true;
  // A TLS listener's side: which listener (for uringproxy_tls_handshakes_total) and when the
  // handshake began.
  std::string listener;
  uint64_t started_us = 0;
};

}  // namespace up
