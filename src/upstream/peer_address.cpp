#include "upstream/peer_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

namespace up {

namespace {
// The host's address bytes and family, IPv4 for a v4-mapped IPv6 address; 0 if neither.
int host_bytes(const sockaddr* sa, const uint8_t*& out) {
  if (sa->sa_family == AF_INET) {
    out = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
    return AF_INET;
  }
  if (sa->sa_family != AF_INET6) return 0;
  const in6_addr& a6 = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
  out = a6.s6_addr;
  if (!IN6_IS_ADDR_V4MAPPED(&a6)) return AF_INET6;
  out += 12;
  return AF_INET;
}
}  // namespace

void set_port(sockaddr_storage& ss, uint16_t port) {
  if (ss.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
  else if (ss.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
}

void unmap_v4(sockaddr_storage& ss) {
  if (ss.ss_family != AF_INET6) return;
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (!IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) return;
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = a6->sin6_port;
  memcpy(&v4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, &v4, sizeof v4);
}

bool same_host(const sockaddr* a, const sockaddr* b) {
  const uint8_t* x = nullptr;
  const uint8_t* y = nullptr;
  int fx = host_bytes(a, x);
  int fy = host_bytes(b, y);
  if (!fx || fx != fy) return false;
  return memcmp(x, y, fx == AF_INET ? 4 : 16) == 0;
}

bool bind_peer_expected(const sockaddr* peer, std::span<const ResolvedAddress> named) {
  for (const ResolvedAddress& a : named)
    if (same_host(peer, reinterpret_cast<const sockaddr*>(&a.addr))) return true;
  return false;
}

bool bind_names_any(const Target& named) {
  static const uint8_t zero[16] = {};
  if (!named.is_literal()) return false;
  return memcmp(named.ip, zero, named.kind == Target::Kind::ipv4 ? 4 : 16) == 0;
}

}  // namespace up
