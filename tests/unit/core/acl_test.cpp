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
  up::Acl acl(true, {}, {}, {});
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

TEST_CASE("NAT64 and 6to4 addresses are judged by the IPv4 address they carry") {
  up::Acl acl(true, {}, {}, {});
  for (const char* a : {"64:ff9b::7f00:1", "64:ff9b::127.0.0.1", "64:ff9b::a00:1",
                        "64:ff9b::c0a8:101", "64:ff9b::a9fe:a9fe", "64:ff9b::",
                        "2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101:5::9",
                        "2002:a9fe:a9fe::1", "2002::", "::ffff:127.0.0.1", "::127.0.0.1"}) {
    INFO(a);
    CHECK_FALSE(allowed(acl, a));
  }
  for (const char* a : {"64:ff9b::808:808", "64:ff9b::8.8.8.8", "2002:808:808::1"}) {
    INFO(a);
    CHECK(allowed(acl, a));
  }
  // A literal target goes through the same check at the first stage.
  up::Target t;
  REQUIRE(up::set_host("64:ff9b::7f00:1", t));
  t.port = 80;
  CHECK(acl.check_target(t, nullptr) == up::Acl::Verdict::deny);
}

TEST_CASE("NAT64 and 6to4: allow and deny lists see both forms") {
  // Allowing all of IPv6 does not open loopback through a NAT64 prefix...
  up::Acl all_v6(true, {"::/0"}, {}, {});
  CHECK_FALSE(allowed(all_v6, "64:ff9b::7f00:1"));
  CHECK_FALSE(allowed(all_v6, "2002:7f00:1::1"));
  CHECK(allowed(all_v6, "2001:db8::1"));
  // ...allowing the IPv4 range does, and only it.
  up::Acl loopback(true, {"127.0.0.0/8"}, {}, {});
  CHECK(allowed(loopback, "64:ff9b::7f00:1"));
  CHECK(allowed(loopback, "2002:7f00:1::1"));
  CHECK_FALSE(allowed(loopback, "64:ff9b::a00:1"));
  // A deny of either form refuses it.
  up::Acl deny_v4(false, {}, {"203.0.113.0/24"}, {});
  CHECK_FALSE(allowed(deny_v4, "64:ff9b::cb00:7107"));
  CHECK_FALSE(allowed(deny_v4, "2002:cb00:7107::1"));
  CHECK(allowed(deny_v4, "64:ff9b::808:808"));
  up::Acl deny_v6(false, {}, {"64:ff9b::/96"}, {});
  CHECK_FALSE(allowed(deny_v6, "64:ff9b::808:808"));
  CHECK(allowed(deny_v6, "2002:808:808::1"));
  // Allowing the NAT64 prefix opens public addresses behind it, not private ones.
  up::Acl nat64(true, {"64:ff9b::/96"}, {}, {});
  CHECK(allowed(nat64, "64:ff9b::808:808"));
  CHECK_FALSE(allowed(nat64, "64:ff9b::7f00:1"));
  // With deny_private off they pass like any address.
  up::Acl open(false, {}, {}, {});
  CHECK(allowed(open, "64:ff9b::7f00:1"));
}

TEST_CASE("deny_private false lets private targets through") {
  up::Acl acl(false, {}, {}, {});
  CHECK(allowed(acl, "127.0.0.1"));
  CHECK(allowed(acl, "::1"));
}

TEST_CASE("an allow CIDR opens the private range it covers, and only those targets") {
  up::Acl acl(true, {"127.0.0.0/8"}, {}, {});
  CHECK(allowed(acl, "127.0.0.2"));
  CHECK(allowed(acl, "::ffff:127.0.0.1"));
  CHECK_FALSE(allowed(acl, "10.0.0.1"));
  CHECK_FALSE(allowed(acl, "8.8.8.8"));  // non-empty allow: only those targets
}

TEST_CASE("an explicit deny wins over allow") {
  up::Acl acl(false, {"0.0.0.0/0"}, {"203.0.113.0/24"}, {});
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

namespace {
up::Target target(const char* authority) {
  up::Target t;
  REQUIRE(up::parse_authority(authority, 0, t));
  return t;
}
}  // namespace

TEST_CASE("names: deny hosts and suffixes win; allow hosts pass the name stage") {
  up::Acl acl(true, {"good.test", "*.partner.test"}, {"blocked.test", "*.evil.test"}, {25});
  using V = up::Acl::Verdict;
  CHECK(acl.check_target(target("blocked.test:80"), nullptr) == V::deny);
  CHECK(acl.check_target(target("BLOCKED.test:80"), nullptr) == V::deny);
  CHECK(acl.check_target(target("x.evil.test:443"), nullptr) == V::deny);
  CHECK(acl.check_target(target("good.test:80"), nullptr) == V::allow);
  CHECK(acl.check_target(target("a.partner.test:80"), nullptr) == V::allow);
  CHECK(acl.check_target(target("other.test:80"), nullptr) == V::check_addresses);
  CHECK(acl.check_target(target("good.test:25"), nullptr) == V::deny);  // deny_ports
  // allow lists are non-empty: a name they do not list is refused at the address stage
  sockaddr_storage ss = addr("8.8.8.8");
  CHECK_FALSE(acl.address_allowed(reinterpret_cast<sockaddr*>(&ss), nullptr, false));
  CHECK(acl.address_allowed(reinterpret_cast<sockaddr*>(&ss), nullptr, true));
  // an allowed name resolving to a private address is still refused (rebinding)
  sockaddr_storage lo = addr("127.0.0.1");
  CHECK_FALSE(acl.address_allowed(reinterpret_cast<sockaddr*>(&lo), nullptr, true));
}

TEST_CASE("literal targets are judged completely at the first stage") {
  up::Acl acl(true, {}, {}, {});
  using V = up::Acl::Verdict;
  CHECK(acl.check_target(target("127.0.0.1:80"), nullptr) == V::deny);
  CHECK(acl.check_target(target("[::ffff:127.0.0.1]:80"), nullptr) == V::deny);
  CHECK(acl.check_target(target("[::1]:80"), nullptr) == V::deny);
  CHECK(acl.check_target(target("8.8.8.8:53"), nullptr) == V::allow);
}

TEST_CASE("per-user lists add to the global ones and touch nobody else") {
  up::Acl acl(false, {}, {}, {});
  up::UserAcl bob;
  bob.deny.add("10.0.0.0/8");
  bob.deny.add("*.social.test");
  using V = up::Acl::Verdict;
  CHECK(acl.check_target(target("10.1.2.3:80"), &bob) == V::deny);
  CHECK(acl.check_target(target("10.1.2.3:80"), nullptr) == V::allow);
  CHECK(acl.check_target(target("www.social.test:443"), &bob) == V::deny);
  CHECK(acl.check_target(target("www.social.test:443"), nullptr) == V::check_addresses);
  up::UserAcl carol;
  carol.allow.add("192.0.2.0/24");
  CHECK(acl.check_target(target("192.0.2.9:80"), &carol) == V::allow);
  CHECK(acl.check_target(target("198.51.100.1:80"), &carol) == V::deny);  // only those
}

TEST_CASE("CIDR sets: prefix 0, host routes, odd prefixes and 10,000 entries") {
  std::vector<std::string> deny;
  for (int i = 0; i < 10000; ++i)
    deny.push_back("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".0/24");
  deny.push_back("203.0.113.7/32");
  deny.push_back("2001:db8::/33");
  up::Acl acl(false, {}, deny, {});
  auto allowed = [&](const char* a) {
    sockaddr_storage ss = addr(a);
    return acl.address_allowed(reinterpret_cast<sockaddr*>(&ss));
  };
  CHECK_FALSE(allowed("10.0.0.1"));
  CHECK_FALSE(allowed("10.39.15.200"));  // entry 9999 = 10.39.15.0/24
  CHECK(allowed("10.39.16.1"));          // one past the last entry
  CHECK_FALSE(allowed("203.0.113.7"));
  CHECK(allowed("203.0.113.8"));
  CHECK_FALSE(allowed("2001:db8:7fff::1"));  // inside /33
  CHECK(allowed("2001:db8:8000::1"));        // outside /33
  up::Acl all(false, {}, {"0.0.0.0/0"}, {});
  sockaddr_storage any = addr("198.51.100.1");
  CHECK_FALSE(all.address_allowed(reinterpret_cast<sockaddr*>(&any)));
  sockaddr_storage v6 = addr("2001:db8::1");
  CHECK(all.address_allowed(reinterpret_cast<sockaddr*>(&v6)));  // /0 of IPv4 only
}
