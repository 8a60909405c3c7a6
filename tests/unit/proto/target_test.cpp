// Tests for src/proto/target.cpp.
#include "uringproxy/target.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <cstring>
#include <string>

using up::Target;

TEST_CASE("parse_authority: domain with port") {
  Target t;
  REQUIRE(up::parse_authority("example.com:443", 0, t));
  CHECK(t.kind == Target::Kind::domain);
  CHECK(t.host == "example.com");
  CHECK(t.port == 443);
  CHECK_FALSE(t.is_literal());
  CHECK(t.to_string() == "example.com:443");
}

TEST_CASE("parse_authority: IPv4 literal") {
  Target t;
  REQUIRE(up::parse_authority("10.1.2.3:8080", 0, t));
  CHECK(t.kind == Target::Kind::ipv4);
  CHECK(t.is_literal());
  CHECK(t.host == "10.1.2.3");
  const uint8_t want[4] = {10, 1, 2, 3};
  CHECK(std::memcmp(t.ip, want, 4) == 0);
  CHECK(t.port == 8080);
  CHECK(t.to_string() == "10.1.2.3:8080");
}

TEST_CASE("parse_authority: IPv6 literal in brackets") {
  Target t;
  REQUIRE(up::parse_authority("[::1]:443", 0, t));
  CHECK(t.kind == Target::Kind::ipv6);
  CHECK(t.host == "::1");
  CHECK(t.ip[15] == 1);
  for (int i = 0; i < 15; ++i) CHECK(t.ip[i] == 0);
  CHECK(t.port == 443);
  CHECK(t.to_string() == "[::1]:443");

  // The text form is canonical whatever the client wrote.
  REQUIRE(up::parse_authority("[2001:DB8:0:0:0:0:0:1]:80", 0, t));
  CHECK(t.host == "2001:db8::1");
  CHECK(t.to_string() == "[2001:db8::1]:80");
}

TEST_CASE("parse_authority: default port") {
  Target t;
  REQUIRE(up::parse_authority("example.com", 80, t));
  CHECK(t.port == 80);
  REQUIRE(up::parse_authority("[::1]", 8080, t));
  CHECK(t.port == 8080);
  CHECK(t.kind == Target::Kind::ipv6);
  REQUIRE(up::parse_authority("example.com:", 80, t));  // empty port = default
  CHECK(t.port == 80);
  // 0 means the port is required.
  CHECK_FALSE(up::parse_authority("example.com", 0, t));
  CHECK_FALSE(up::parse_authority("[::1]", 0, t));
  CHECK_FALSE(up::parse_authority("example.com:", 0, t));
}

TEST_CASE("parse_authority: ports at the edges") {
  Target t;
  REQUIRE(up::parse_authority("h:1", 0, t));
  CHECK(t.port == 1);
  REQUIRE(up::parse_authority("h:65535", 0, t));
  CHECK(t.port == 65535);
  REQUIRE(up::parse_authority("h:00080", 0, t));
  CHECK(t.port == 80);
  CHECK_FALSE(up::parse_authority("h:0", 0, t));
  CHECK_FALSE(up::parse_authority("h:65536", 0, t));
  CHECK_FALSE(up::parse_authority("h:99999", 0, t));
  CHECK_FALSE(up::parse_authority("h:100000", 0, t));
  CHECK_FALSE(up::parse_authority("h:-1", 0, t));
  CHECK_FALSE(up::parse_authority("h:+80", 0, t));
  CHECK_FALSE(up::parse_authority("h:8 0", 0, t));
  CHECK_FALSE(up::parse_authority("h:80x", 0, t));
  CHECK_FALSE(up::parse_authority("h:0x50", 0, t));
}

TEST_CASE("parse_authority: refusals leave the output alone") {
  Target t;
  REQUIRE(up::parse_authority("keep.example:1", 0, t));
  const char* bad[] = {
      "",  ":80", "[]:80", "[::1:80", "[::1]80", "::1:80", "::1",
      "[1.2.3.4]:80", "[example.com]:80", "[fe80::1%eth0]:80", "exa mple.com:80",
      "exa/mple.com:80", "example..com:80", ".example.com:80", "ex@mple.com:80",
      "a:b:c", "[::1]:80:80", "host:80/", "ex\r\nample:80",
  };
  for (const char* b : bad) {
    std::string text = b;
    CAPTURE(text);
    CHECK_FALSE(up::parse_authority(b, 80, t));
  }
  CHECK(t.host == "keep.example");
  CHECK(t.port == 1);
}

TEST_CASE("set_host: literals are strict, names must be DNS names") {
  Target t;
  REQUIRE(up::set_host("192.168.0.1", t));
  CHECK(t.kind == Target::Kind::ipv4);
  REQUIRE(up::set_host("::ffff:1.2.3.4", t));
  CHECK(t.kind == Target::Kind::ipv6);
  CHECK(t.ip[10] == 0xff);
  CHECK(t.ip[15] == 4);
  REQUIRE(up::set_host("under_score-and-dash.example.", t));
  CHECK(t.kind == Target::Kind::domain);
  CHECK(t.host == "under_score-and-dash.example.");
  for (uint8_t b : t.ip) CHECK(b == 0);  // a name clears any old address
  REQUIRE(up::set_host("localhost", t));
  REQUIRE(up::set_host("1.2.3.com", t));
  CHECK(t.kind == Target::Kind::domain);
  REQUIRE(up::set_host("0xdead.beef.com", t));

  // inet_aton forms a resolver would read as an address are refused, not treated as names.
  CHECK_FALSE(up::set_host("127.1", t));
  CHECK_FALSE(up::set_host("2130706433", t));
  CHECK_FALSE(up::set_host("0x7f.0.0.1", t));
  CHECK_FALSE(up::set_host("0x7f000001", t));
  CHECK_FALSE(up::set_host("1.2.3.04", t));
  CHECK_FALSE(up::set_host("256.1.1.1", t));

  CHECK_FALSE(up::set_host("", t));
  CHECK_FALSE(up::set_host(".", t));
  CHECK_FALSE(up::set_host("a..b", t));
  CHECK_FALSE(up::set_host("a b", t));
  CHECK_FALSE(up::set_host(std::string_view("a\0b", 3), t));
  CHECK_FALSE(up::set_host("ex*ample.com", t));
}

TEST_CASE("set_host: an IPv4 literal's text is already inet_ntop's") {
  // set_host keeps the text of an IPv4 literal as sent: only canonical dotted quads pass
  // inet_pton, so equal addresses still print (and compare) the same.
  for (const char* ok : {"0.0.0.0", "127.0.0.1", "10.20.30.40", "255.255.255.255", "1.2.3.4"}) {
    Target t;
    REQUIRE(up::set_host(ok, t));
    char text[INET_ADDRSTRLEN];
    REQUIRE(inet_ntop(AF_INET, t.ip, text, sizeof text) != nullptr);
    CHECK(t.host == text);
  }
  Target t;
  for (const char* bad : {"01.2.3.4", "1.2.3.004", "1.2.3.4.", " 1.2.3.4", "1.2.3.4 ", "+1.2.3.4",
                          "1.2.3", "1.2.3.4.5", "1..3.4"})
    CHECK_MESSAGE(!(up::set_host(bad, t) && t.kind == Target::Kind::ipv4), bad);
  // A NUL ends the C string inet_pton sees: an address with bytes behind it is refused (found
  // by the VLESS fuzzer: a name "0.5.0.5\0" kept its NUL as an IPv4 literal's text).
  CHECK_FALSE(up::set_host(std::string_view("0.5.0.5\0", 8), t));
  CHECK_FALSE(up::set_host(std::string_view("1.2.3.4\0junk", 12), t));
  CHECK_FALSE(up::set_host(std::string_view("::1\0", 4), t));
}

TEST_CASE("set_host: length limits") {
  Target t;
  std::string label63(63, 'a');
  CHECK(up::set_host(label63 + ".com", t));
  CHECK_FALSE(up::set_host(std::string(64, 'a') + ".com", t));
  // 4 labels of 63 + 3 dots = 255 bytes: too long; trim to 253.
  std::string name = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  CHECK(name.size() == 253);
  CHECK(up::set_host(name, t));
  CHECK_FALSE(up::set_host(name + "b", t));
}

TEST_CASE("to_string round-trips through parse_authority") {
  const char* inputs[] = {"example.com:1", "1.2.3.4:65535", "[::]:22", "[fe80::1:2]:8443",
                          "a-b_c.d:80"};
  for (const char* in : inputs) {
    std::string text = in;
    CAPTURE(text);
    Target a;
    REQUIRE(up::parse_authority(in, 0, a));
    Target b;
    REQUIRE(up::parse_authority(a.to_string(), 0, b));
    CHECK(a.to_string() == b.to_string());
    CHECK(a.kind == b.kind);
    CHECK(std::memcmp(a.ip, b.ip, 16) == 0);
    CHECK(a.port == b.port);
  }
}

TEST_CASE("write_address: each kind under a format's own type bytes, a bad name refused") {
  const up::AddressTypes socks5{1, 3, 4}, vless{1, 2, 3};
  uint8_t out[260];
  Target t;
  REQUIRE(up::parse_authority("10.1.2.3:80", 0, t));
  REQUIRE(up::write_address(t, socks5, out) == 5);
  CHECK(out[0] == 1);
  CHECK((out[1] == 10 && out[2] == 1 && out[3] == 2 && out[4] == 3));
  REQUIRE(up::parse_authority("[::1]:80", 0, t));
  REQUIRE(up::write_address(t, vless, out) == 17);
  CHECK(out[0] == 3);
  CHECK(out[16] == 1);
  REQUIRE(up::parse_authority("example.com:80", 0, t));
  REQUIRE(up::write_address(t, vless, out) == 2 + 11);
  CHECK(out[0] == 2);
  CHECK(out[1] == 11);
  CHECK(std::string(reinterpret_cast<char*>(out + 2), 11) == "example.com");
  t.host.assign(256, 'a');
  CHECK(up::write_address(t, socks5, out) == 0);
  t.host.clear();
  CHECK(up::write_address(t, socks5, out) == 0);
}
