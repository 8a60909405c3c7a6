#pragma once
// What a completion is for. A CQE's user_data packs a pointer (a Connection, a Listener) with
// the operation in its low 5 bits (both are 32-byte aligned), or a c-ares fd for dns_poll.
// One outstanding operation per kind per connection, so a completion is never ambiguous.
#include <cstdint>

namespace up {

enum class Op : uint8_t {
  none = 0,
  // worker-level
  accept,
  tick,
  mailbox,
  dns_poll,
  ignored,  // cancels and other fire-and-forget requests
  // connection-level
  client_recv,
  client_send,
  target_recv,
  target_send,
  connect,
  up_in,     // relay: client readable
  up_out,    // relay: target writable
  down_in,   // relay: target readable
  down_out,  // relay: client writable
  tls_send,  // ciphertext to a TLS upstream
  tls_recv,  // ciphertext from a TLS upstream
  client_tls_send,  // ciphertext to a client of a TLS listener
  client_tls_recv,  // ciphertext from a client of a TLS listener
  // UDP association (udp/udp_association.cpp): the pointer is the UdpAssociation, or for
  // udp_send one of its send slots (many datagrams may be in flight at once).
  udp_client_in,  // multishot recvmsg on the client-facing relay socket
  udp_target_in,  // multishot recvmsg on the target-facing socket
  udp_send,       // sendmsg of one datagram, either way
  // SOCKS5 BIND (upstream/bind_dial.cpp), while it waits for its one incoming connection
  bind_accept,  // accept on the BIND's listening socket
  bind_hangup,  // poll for the client closing its connection meanwhile
  count
};
static_assert(static_cast<int>(Op::count) <= 32);

constexpr int first_conn_op = static_cast<int>(Op::client_recv);

inline uint64_t pack(const void* p, Op op) {
  return reinterpret_cast<uint64_t>(p) | static_cast<uint64_t>(op);
}
inline Op op_of(uint64_t ud) { return static_cast<Op>(ud & 31); }
template <typename T>
inline T* ptr_of(uint64_t ud) {
  return reinterpret_cast<T*>(ud & ~uint64_t{31});
}
inline uint64_t pack_fd(int fd, Op op) { return (static_cast<uint64_t>(fd) << 5) | uint64_t(op); }
inline int fd_of(uint64_t ud) { return static_cast<int>(ud >> 5); }

}  // namespace up
