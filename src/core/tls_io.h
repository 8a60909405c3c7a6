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
  // Ciphertext from the socket, which the layer reads in place (what it writes it keeps until
  // sent: TlsLayer::out_begin). 16 KiB to start with, 64 KiB once a receive fills it, as the
  // copy relay's buffers do: a bulk flow then takes four records per receive.
  static constexpr uint32_t small_cap = 16 * 1024;
  static constexpr uint32_t bulk_cap = 64 * 1024;
  std::unique_ptr<char[]> in{new char[small_cap]};
  uint32_t in_cap = small_cap;
  bool in_grow = false;  // filled: grows before the next receive, when the layer holds none of it
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
