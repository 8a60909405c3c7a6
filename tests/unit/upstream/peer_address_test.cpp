#include "upstream/peer_address.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <string.h>

#include <vector>

namespace {

sockaddr_storage v4(const char* ip, uint16_t port = 0) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  inet_pton(AF_INET, ip, &a->sin_addr);
  return ss;
}

sockaddr_storage v6(const char* ip, uint16_t port = 0) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &a->sin6_addr);
  return ss;
}

const sockaddr* sa(const sockaddr_storage& ss) { return reinterpret_cast<const sockaddr*>(&ss); }

up::ResolvedAddress resolved(const sockaddr_storage& ss) {
  up::ResolvedAddress r{};
  r.addr = ss;
  r.len = ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  return r;
}

up::Target named(const char* host) {
  up::Target t;
  REQUIRE(up::set_host(host, t));
  return t;
}

}  // namespace

TEST_CASE("unmap_v4: a v4-mapped address becomes IPv4 with its port; others are kept") {
  sockaddr_storage m = v6("::ffff:127.0.0.2", 1080);
  up::unmap_v4(m);
  REQUIRE(m.ss_family == AF_INET);
  auto* a = reinterpret_cast<sockaddr_in*>(&m);
  CHECK(ntohs(a->sin_port) == 1080);
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
  CHECK(std::string(ip) == "127.0.0.2");

  sockaddr_storage plain6 = v6("::1", 7);
  sockaddr_storage before = plain6;
  up::unmap_v4(plain6);
  CHECK(memcmp(&plain6, &before, sizeof before) == 0);
  sockaddr_storage plain4 = v4("10.0.0.1", 7);
  before = plain4;
  up::unmap_v4(plain4);
  CHECK(memcmp(&plain4, &before, sizeof before) == 0);
}

TEST_CASE("same_host: ports ignored, IPv4 equals its v4-mapped form, families otherwise differ") {
  CHECK(up::same_host(sa(v4("127.0.0.1", 1)), sa(v4("127.0.0.1", 2))));
  CHECK_FALSE(up::same_host(sa(v4("127.0.0.1")), sa(v4("127.0.0.2"))));
  CHECK(up::same_host(sa(v6("::ffff:127.0.0.1", 5)), sa(v4("127.0.0.1", 6))));
  CHECK(up::same_host(sa(v4("127.0.0.1")), sa(v6("::ffff:127.0.0.1"))));
  CHECK(up::same_host(sa(v6("::1", 1)), sa(v6("::1", 9))));
  CHECK_FALSE(up::same_host(sa(v6("::1")), sa(v4("127.0.0.1"))));
  // ::127.0.0.1 (IPv4-compatible, deprecated) is not the IPv4 host.
  CHECK_FALSE(up::same_host(sa(v6("::127.0.0.1")), sa(v4("127.0.0.1"))));
  sockaddr_storage unix_like{};
  unix_like.ss_family = AF_UNIX;
  CHECK_FALSE(up::same_host(sa(unix_like), sa(unix_like)));
}

TEST_CASE("bind_peer_expected: the peer must be one of the named addresses") {
  std::vector<up::ResolvedAddress> named = {resolved(v4("192.0.2.1", 21)),
                                            resolved(v6("2001:db8::1", 21))};
  CHECK(up::bind_peer_expected(sa(v4("192.0.2.1", 40000)), named));
  CHECK(up::bind_peer_expected(sa(v6("::ffff:192.0.2.1", 40000)), named));
  CHECK(up::bind_peer_expected(sa(v6("2001:db8::1", 1)), named));
  CHECK_FALSE(up::bind_peer_expected(sa(v4("192.0.2.2", 21)), named));
  CHECK_FALSE(up::bind_peer_expected(sa(v6("2001:db8::2", 21)), named));
  CHECK_FALSE(up::bind_peer_expected(sa(v4("192.0.2.1")), {}));  // nothing named, nothing matches
}

TEST_CASE("bind_names_any: only an unspecified literal address") {
  CHECK(up::bind_names_any(named("0.0.0.0")));
  CHECK(up::bind_names_any(named("::")));
  CHECK_FALSE(up::bind_names_any(named("127.0.0.1")));
  CHECK_FALSE(up::bind_names_any(named("::1")));
  CHECK_FALSE(up::bind_names_any(named("0.0.0.1")));
  CHECK_FALSE(up::bind_names_any(named("example.com")));
}
