#pragma once
// Plaintext-over-ciphertext bookkeeping for one TLS side of a connection (a TLS listener's
// client, or a socks5s / https upstream): the TlsLayer never touches a socket; the connection
// moves its ciphertext with the ring (core/transport.cpp).
#include <cstdint>
#include <memory>
#include <string>

#include "core/growing_buffer.h"
#include "upstream/tls_layer.h"

namespace up {

struct TlsIo {
  TlsLayer layer;
  // Ciphertext from the socket, which the layer reads in place (what it writes it keeps until
  // sent: TlsLayer::out_begin).
  GrowingBuffer in;
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
