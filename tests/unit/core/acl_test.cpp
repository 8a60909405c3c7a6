#include "route/acl.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <string.h>

#include <string>

namespace {
sockaddr_storage addr(const char* text) {
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else {
    REQUIRE(inet_pton(AF_INET6, text, &v6->sin6_addr) == 1);
    v6->sin6_family = AF_INET6;
  }
  return ss;
}
bool allowed(const up::Acl& acl, const char* text) {
  sockaddr_storage ss = addr(text);
  return acl.address_allowed(reinterpret_cast<sockaddr*>(&ss));
}
}  // namespace

TEST_CASE("deny_private refuses every built-in private and special range") {
  up::Acl acl(true, {}, {});
  for (const char* a : {"127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                        "192.168.1.1", "169.254.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1",
                        "255.255.255.255", "::1", "::", "fc00::1", "fd12::1", "fe80::1",
                        "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1"}) {
    INFO(a);
    CHECK_FALSE(allowed(acl, a));
  }
  for (const char* a : {"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2001:db8::1",
                        "2606:4700::1111", "::ffff:8.8.8.8"}) {
    INFO(a);
    CHECK(allowed(acl, a));
  }
}

TEST_CASE("deny_private false lets private targets through") {
  up::Acl acl(false, {}, {});
  CHECK(allowed(acl, "127.0.0.1"));
  CHECK(allowed(acl, "::1"));
}

TEST_CASE("an allow CIDR opens the private range it covers, and only those targets") {
  up::Acl acl(true, {"127.0.0.0/8"}, {});
  CHECK(allowed(acl, "127.0.0.2"));
  CHECK(allowed(acl, "::ffff:127.0.0.1"));
  CHECK_FALSE(allowed(acl, "10.0.0.1"));
  CHECK_FALSE(allowed(acl, "8.8.8.8"));  // non-empty allow: only those targets
}

TEST_CASE("an explicit deny wins over allow") {
  up::Acl acl(false, {"0.0.0.0/0"}, {"203.0.113.0/24"});
  CHECK_FALSE(allowed(acl, "203.0.113.7"));
  CHECK(allowed(acl, "198.51.100.7"));
}

TEST_CASE("Cidr::parse accepts prefixes in range and refuses the rest") {
  up::Cidr c;
  CHECK(up::Cidr::parse("10.0.0.0/8", c));
  CHECK(c.prefix == 8);
  CHECK(up::Cidr::parse("2001:db8::/32", c));
  CHECK(up::Cidr::parse("1.2.3.4", c));
  CHECK(c.prefix == 32);
  CHECK_FALSE(up::Cidr::parse("10.0.0.0/33", c));
  CHECK_FALSE(up::Cidr::parse("::/129", c));
  CHECK_FALSE(up::Cidr::parse("10.0.0.0/", c));
  CHECK_FALSE(up::Cidr::parse("example.com/8", c));
  CHECK_FALSE(up::Cidr::parse("10.0.0.0/-1", c));
}
