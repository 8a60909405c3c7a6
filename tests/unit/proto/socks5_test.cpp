// Tests for src/proto/socks5.cpp.
#include "uringproxy/socks5.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace up::socks5;
using Bytes = std::vector<uint8_t>;

namespace {

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::span<const uint8_t> prefix(const Bytes& b, size_t n) { return {b.data(), n}; }

// Every strict prefix of a valid message says need_more and consumes nothing.
template <class ParseFn>
void check_truncations(const Bytes& msg, ParseFn parse) {
  for (size_t n = 0; n < msg.size(); ++n) {
    CAPTURE(n);
    size_t consumed = 99;
    CHECK(parse(prefix(msg, n), consumed) == Parse::need_more);
    CHECK(consumed == 0);
  }
}

}  // namespace

TEST_CASE("greeting: methods offered") {
  Greeting g;
  size_t consumed = 0;
  Bytes both = {5, 2, 0, 2};
  REQUIRE(parse_greeting(both, g, consumed) == Parse::done);
  CHECK(consumed == 4);
  CHECK(g.no_auth);
  CHECK(g.userpass);

  Bytes only_none = {5, 1, 0};
  REQUIRE(parse_greeting(only_none, g, consumed) == Parse::done);
  CHECK(consumed == 3);
  CHECK(g.no_auth);
  CHECK_FALSE(g.userpass);

  Bytes gssapi_and_userpass = {5, 3, 1, 2, 0x80};
  REQUIRE(parse_greeting(gssapi_and_userpass, g, consumed) == Parse::done);
  CHECK(consumed == 5);
  CHECK_FALSE(g.no_auth);
  CHECK(g.userpass);

  Bytes neither = {5, 1, 1};
  REQUIRE(parse_greeting(neither, g, consumed) == Parse::done);
  CHECK_FALSE(g.no_auth);
  CHECK_FALSE(g.userpass);

  // All 255 methods.
  Bytes all = {5, 255};
  for (int i = 0; i < 255; ++i) all.push_back(static_cast<uint8_t>(i));
  REQUIRE(parse_greeting(all, g, consumed) == Parse::done);
  CHECK(consumed == 257);
  CHECK(g.no_auth);
  CHECK(g.userpass);
}

TEST_CASE("greeting: truncations and pipelined bytes") {
  Bytes msg = {5, 2, 0, 2};
  check_truncations(msg, [](std::span<const uint8_t> in, size_t& c) {
    Greeting g;
    return parse_greeting(in, g, c);
  });
  // A client that sends greeting, auth and request at once: consumed stops at the greeting.
  Bytes pipelined = cat(msg, {1, 1, 'u', 1, 'p', 5, 1, 0, 1, 1, 2, 3, 4, 0, 80});
  Greeting g;
  size_t consumed = 0;
  REQUIRE(parse_greeting(pipelined, g, consumed) == Parse::done);
  CHECK(consumed == 4);
}

TEST_CASE("greeting: errors") {
  Greeting g;
  size_t consumed = 7;
  Bytes v4 = {4, 1, 0};
  CHECK(parse_greeting(v4, g, consumed) == Parse::error);
  CHECK(consumed == 0);
  Bytes just_bad_version = {4};  // refused from the first byte
  CHECK(parse_greeting(just_bad_version, g, consumed) == Parse::error);
  Bytes http = {'G', 'E', 'T', ' '};
  CHECK(parse_greeting(http, g, consumed) == Parse::error);
  Bytes zero_methods = {5, 0};
  CHECK(parse_greeting(zero_methods, g, consumed) == Parse::error);
}

TEST_CASE("userpass: valid, truncations and pipelined") {
  Bytes msg = {1, 5, 'a', 'l', 'i', 'c', 'e', 6, 's', 'e', 'c', 'r', 'e', 't'};
  Credentials c;
  size_t consumed = 0;
  REQUIRE(parse_userpass(msg, c, consumed) == Parse::done);
  CHECK(consumed == msg.size());
  CHECK(c.username == "alice");
  CHECK(c.password == "secret");
  // Views point into the input.
  CHECK(reinterpret_cast<const uint8_t*>(c.username.data()) == msg.data() + 2);

  check_truncations(msg, [](std::span<const uint8_t> in, size_t& n) {
    Credentials cr;
    return parse_userpass(in, cr, n);
  });

  Bytes pipelined = cat(msg, {5, 1, 0, 1});
  REQUIRE(parse_userpass(pipelined, c, consumed) == Parse::done);
  CHECK(consumed == msg.size());

  Bytes empty_pass = {1, 1, 'u', 0};
  REQUIRE(parse_userpass(empty_pass, c, consumed) == Parse::done);
  CHECK(consumed == 4);
  CHECK(c.username == "u");
  CHECK(c.password.empty());

  Bytes long_fields = {1, 255};
  long_fields.insert(long_fields.end(), 255, 'x');
  long_fields.push_back(255);
  long_fields.insert(long_fields.end(), 255, 'y');
  REQUIRE(parse_userpass(long_fields, c, consumed) == Parse::done);
  CHECK(consumed == 513);
  CHECK(c.username == std::string(255, 'x'));
  CHECK(c.password == std::string(255, 'y'));
}

TEST_CASE("userpass: errors") {
  Credentials c;
  size_t consumed = 3;
  Bytes bad_version = {5, 1, 'u', 1, 'p'};
  CHECK(parse_userpass(bad_version, c, consumed) == Parse::error);
  CHECK(consumed == 0);
  Bytes empty_user = {1, 0, 1, 'p'};
  CHECK(parse_userpass(empty_user, c, consumed) == Parse::error);
}

TEST_CASE("userpass: a NUL in either field is refused, not cut there") {
  Credentials c;
  size_t consumed = 0;
  Bytes in_password = {1, 3, 'b', 'o', 'b', 6, 's', 'e', 'c', 0, 'z', 'z'};
  CHECK(parse_userpass(in_password, c, consumed) == Parse::error);
  CHECK(consumed == 0);
  Bytes only_nul = {1, 3, 'b', 'o', 'b', 1, 0};
  CHECK(parse_userpass(only_nul, c, consumed) == Parse::error);
  Bytes in_username = {1, 4, 'b', 'o', 'b', 0, 1, 'p'};
  CHECK(parse_userpass(in_username, c, consumed) == Parse::error);
  Bytes leading = {1, 1, 0, 1, 'p'};
  CHECK(parse_userpass(leading, c, consumed) == Parse::error);
  // Every prefix of the message still asks for more: the refusal needs the whole field.
  for (size_t n = 0; n < in_password.size(); ++n)
    CHECK(parse_userpass({in_password.data(), n}, c, consumed) == Parse::need_more);
}

TEST_CASE("request: IPv4 CONNECT") {
  Bytes msg = {5, 1, 0, 1, 93, 184, 216, 34, 0x01, 0xbb};
  Request r;
  size_t consumed = 0;
  Reply reply = Reply::general_failure;
  REQUIRE(parse_request(msg, r, consumed, reply) == Parse::done);
  CHECK(consumed == 10);
  CHECK(reply == Reply::succeeded);
  CHECK(r.cmd == Command::connect);
  CHECK(r.target.kind == up::Target::Kind::ipv4);
  CHECK(r.target.host == "93.184.216.34");
  CHECK(r.target.port == 443);
  CHECK(r.target.ip[0] == 93);
  CHECK(r.target.ip[3] == 34);
  check_truncations(msg, [](std::span<const uint8_t> in, size_t& n) {
    Request rq;
    Reply rp;
    return parse_request(in, rq, n, rp);
  });
}

TEST_CASE("request: IPv6 BIND") {
  Bytes msg = {5, 2, 0, 4};
  uint8_t addr[16];
  REQUIRE(inet_pton(AF_INET6, "2001:db8::7", addr) == 1);
  msg.insert(msg.end(), addr, addr + 16);
  msg.push_back(0xff);
  msg.push_back(0xff);
  Request r;
  size_t consumed = 0;
  Reply reply;
  REQUIRE(parse_request(msg, r, consumed, reply) == Parse::done);
  CHECK(consumed == 22);
  CHECK(r.cmd == Command::bind);
  CHECK(r.target.kind == up::Target::Kind::ipv6);
  CHECK(r.target.host == "2001:db8::7");
  CHECK(std::memcmp(r.target.ip, addr, 16) == 0);
  CHECK(r.target.port == 65535);
  CHECK(r.target.to_string() == "[2001:db8::7]:65535");
  check_truncations(msg, [](std::span<const uint8_t> in, size_t& n) {
    Request rq;
    Reply rp;
    return parse_request(in, rq, n, rp);
  });
}

TEST_CASE("request: domain UDP ASSOCIATE, truncations, pipelined data") {
  std::string name = "example.com";
  Bytes msg = {5, 3, 0, 3, static_cast<uint8_t>(name.size())};
  msg.insert(msg.end(), name.begin(), name.end());
  msg.push_back(0x00);
  msg.push_back(0x50);
  Request r;
  size_t consumed = 0;
  Reply reply;
  REQUIRE(parse_request(msg, r, consumed, reply) == Parse::done);
  CHECK(consumed == msg.size());
  CHECK(r.cmd == Command::udp_associate);
  CHECK(r.target.kind == up::Target::Kind::domain);
  CHECK(r.target.host == "example.com");
  CHECK(r.target.port == 80);
  check_truncations(msg, [](std::span<const uint8_t> in, size_t& n) {
    Request rq;
    Reply rp;
    return parse_request(in, rq, n, rp);
  });
  // Early application data after the request is left for the relay.
  Bytes pipelined = cat(msg, {'G', 'E', 'T', ' ', '/', '\r', '\n'});
  REQUIRE(parse_request(pipelined, r, consumed, reply) == Parse::done);
  CHECK(consumed == msg.size());
}

TEST_CASE("request: a literal sent as a name becomes a literal") {
  std::string name = "10.0.0.1";
  Bytes msg = {5, 1, 0, 3, static_cast<uint8_t>(name.size())};
  msg.insert(msg.end(), name.begin(), name.end());
  msg.push_back(0);
  msg.push_back(22);
  Request r;
  size_t consumed = 0;
  Reply reply;
  REQUIRE(parse_request(msg, r, consumed, reply) == Parse::done);
  CHECK(r.target.kind == up::Target::Kind::ipv4);
  CHECK(r.target.ip[0] == 10);
  CHECK(r.target.ip[3] == 1);
  CHECK(r.target.port == 22);
}

TEST_CASE("request: port 0 parses (UDP ASSOCIATE clients send 0.0.0.0:0)") {
  Bytes msg = {5, 3, 0, 1, 0, 0, 0, 0, 0, 0};
  Request r;
  size_t consumed = 0;
  Reply reply;
  REQUIRE(parse_request(msg, r, consumed, reply) == Parse::done);
  CHECK(r.target.port == 0);
  CHECK(r.target.host == "0.0.0.0");
}

TEST_CASE("request: every error path and its reply code") {
  Request r;
  size_t consumed = 5;
  Reply reply = Reply::succeeded;
  struct Case {
    Bytes in;
    Reply want;
  };
  std::string bad_name = "bad name";
  Bytes bad_domain = {5, 1, 0, 3, static_cast<uint8_t>(bad_name.size())};
  bad_domain.insert(bad_domain.end(), bad_name.begin(), bad_name.end());
  bad_domain.insert(bad_domain.end(), {0, 80});
  Case cases[] = {
      {{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, Reply::general_failure},  // bad version
      {{4}, Reply::general_failure},                              // seen at the first byte
      {{5, 0, 0, 1, 1, 2, 3, 4, 0, 80}, Reply::cmd_not_supported},
      {{5, 4, 0, 1, 1, 2, 3, 4, 0, 80}, Reply::cmd_not_supported},
      {{5, 0xff}, Reply::cmd_not_supported},  // seen at the second byte
      {{5, 1, 1, 1, 1, 2, 3, 4, 0, 80}, Reply::general_failure},  // reserved byte
      {{5, 1, 0, 2, 1, 2, 3, 4, 0, 80}, Reply::atyp_not_supported},
      {{5, 1, 0, 5}, Reply::atyp_not_supported},
      {{5, 1, 0, 0}, Reply::atyp_not_supported},
      {{5, 1, 0, 3, 0}, Reply::general_failure},  // empty name, seen before the port
      {bad_domain, Reply::general_failure},
  };
  for (const Case& c : cases) {
    CAPTURE(c.in.size());
    CAPTURE(static_cast<int>(c.want));
    CHECK(parse_request(c.in, r, consumed, reply) == Parse::error);
    CHECK(reply == c.want);
    CHECK(consumed == 0);
  }
}

TEST_CASE("server encoders") {
  uint8_t out[22];
  REQUIRE(encode_method_choice(method_userpass, out) == 2);
  CHECK(out[0] == 5);
  CHECK(out[1] == 2);
  REQUIRE(encode_method_choice(method_none_acceptable, out) == 2);
  CHECK(out[1] == 0xff);
  REQUIRE(encode_auth_status(true, out) == 2);
  CHECK(out[0] == 1);
  CHECK(out[1] == 0);
  REQUIRE(encode_auth_status(false, out) == 2);
  CHECK(out[1] != 0);
}

TEST_CASE("encode_reply round-trips through parse_reply") {
  uint8_t out[22];
  Reply reply;
  size_t consumed = 0;

  SUBCASE("null address") {
    REQUIRE(encode_reply(Reply::host_unreachable, nullptr, out) == 10);
    Bytes want = {5, 4, 0, 1, 0, 0, 0, 0, 0, 0};
    CHECK(Bytes(out, out + 10) == want);
    REQUIRE(parse_reply({out, 10}, reply, consumed) == Parse::done);
    CHECK(reply == Reply::host_unreachable);
    CHECK(consumed == 10);
  }
  SUBCASE("IPv4") {
    sockaddr_in s4{};
    s4.sin_family = AF_INET;
    s4.sin_port = htons(1080);
    inet_pton(AF_INET, "192.0.2.9", &s4.sin_addr);
    REQUIRE(encode_reply(Reply::succeeded, reinterpret_cast<sockaddr*>(&s4), out) == 10);
    Bytes want = {5, 0, 0, 1, 192, 0, 2, 9, 0x04, 0x38};
    CHECK(Bytes(out, out + 10) == want);
    REQUIRE(parse_reply({out, 10}, reply, consumed) == Parse::done);
    CHECK(reply == Reply::succeeded);
    CHECK(consumed == 10);
  }
  SUBCASE("IPv6") {
    sockaddr_in6 s6{};
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(443);
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    REQUIRE(encode_reply(Reply::refused, reinterpret_cast<sockaddr*>(&s6), out) == 22);
    CHECK(out[3] == 4);
    CHECK(std::memcmp(out + 4, &s6.sin6_addr, 16) == 0);
    CHECK(out[20] == 0x01);
    CHECK(out[21] == 0xbb);
    REQUIRE(parse_reply({out, 22}, reply, consumed) == Parse::done);
    CHECK(reply == Reply::refused);
    CHECK(consumed == 22);
  }
  SUBCASE("every reply code") {
    for (int code = 0; code <= 8; ++code) {
      encode_reply(static_cast<Reply>(code), nullptr, out);
      REQUIRE(parse_reply({out, 10}, reply, consumed) == Parse::done);
      CHECK(static_cast<int>(reply) == code);
    }
  }
}

TEST_CASE("parse_reply: truncations, domain BND.ADDR, errors") {
  Bytes msg = {5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0, 80};
  Reply reply;
  size_t consumed = 0;
  REQUIRE(parse_reply(msg, reply, consumed) == Parse::done);
  CHECK(consumed == msg.size());
  check_truncations(msg, [](std::span<const uint8_t> in, size_t& n) {
    Reply rp;
    return parse_reply(in, rp, n);
  });
  Bytes pipelined = cat(msg, {'H', 'T', 'T', 'P'});
  REQUIRE(parse_reply(pipelined, reply, consumed) == Parse::done);
  CHECK(consumed == msg.size());

  Bytes bad_version = {4, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  CHECK(parse_reply(bad_version, reply, consumed) == Parse::error);
  Bytes bad_atyp = {5, 0, 0, 9, 0, 0, 0, 0, 0, 0};
  CHECK(parse_reply(bad_atyp, reply, consumed) == Parse::error);
}

TEST_CASE("client encoders round-trip through the server parsers") {
  SUBCASE("greeting") {
    uint8_t out[4];
    Greeting g;
    size_t consumed = 0;
    size_t n = encode_greeting(true, out);
    REQUIRE(parse_greeting({out, n}, g, consumed) == Parse::done);
    CHECK(consumed == n);
    CHECK(g.userpass);
    n = encode_greeting(false, out);
    REQUIRE(parse_greeting({out, n}, g, consumed) == Parse::done);
    CHECK(consumed == n);
    CHECK(g.no_auth);
    CHECK_FALSE(g.userpass);
  }
  SUBCASE("userpass") {
    uint8_t out[513];
    Credentials c;
    size_t consumed = 0;
    size_t n = encode_userpass("alice.us-east", "p@ss:word", out);
    REQUIRE(n == 3 + 13 + 9);
    REQUIRE(parse_userpass({out, n}, c, consumed) == Parse::done);
    CHECK(consumed == n);
    CHECK(c.username == "alice.us-east");
    CHECK(c.password == "p@ss:word");
    std::string u255(255, 'u'), p255(255, 'p');
    n = encode_userpass(u255, p255, out);
    REQUIRE(n == 513);
    REQUIRE(parse_userpass({out, n}, c, consumed) == Parse::done);
    CHECK(c.username == u255);
    CHECK(c.password == p255);
    CHECK(encode_userpass(std::string(256, 'u'), "p", out) == 0);
    CHECK(encode_userpass("u", std::string(256, 'p'), out) == 0);
  }
  SUBCASE("requests") {
    const char* authorities[] = {"1.2.3.4:80", "[::1]:443", "[2001:db8::ff]:1",
                                 "example.com:8080", "a.b-c_d.example.:65535"};
    for (const char* a : authorities) {
      std::string text = a;
      CAPTURE(text);
      up::Target t;
      REQUIRE(up::parse_authority(a, 0, t));
      for (Command cmd : {Command::connect, Command::bind, Command::udp_associate}) {
        uint8_t out[262];
        size_t n = encode_request(cmd, t, out);
        REQUIRE(n > 0);
        Request r;
        size_t consumed = 0;
        Reply reply;
        REQUIRE(parse_request({out, n}, r, consumed, reply) == Parse::done);
        CHECK(consumed == n);
        CHECK(r.cmd == cmd);
        CHECK(r.target.kind == t.kind);
        CHECK(r.target.host == t.host);
        CHECK(r.target.port == t.port);
        CHECK(std::memcmp(r.target.ip, t.ip, 16) == 0);
      }
    }
  }
  SUBCASE("longest name fits the 262-byte buffer") {
    up::Target t;
    std::string l63(63, 'a');
    REQUIRE(up::set_host(l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b'), t));
    t.port = 1;
    uint8_t out[262];
    size_t n = encode_request(Command::connect, t, out);
    CHECK(n == 4 + 1 + 253 + 2);
    Request r;
    size_t consumed = 0;
    Reply reply;
    REQUIRE(parse_request({out, n}, r, consumed, reply) == Parse::done);
    CHECK(r.target.host == t.host);
  }
}

// --- UDP request header (RFC 1928 section 7)

TEST_CASE("udp header: IPv4, IPv6 and domain destinations, payload after the header") {
  UdpHeader h;
  Bytes v4 = {0, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, 'h', 'i'};
  REQUIRE(parse_udp_header(v4, h) == UdpParse::ok);
  CHECK(h.frag == 0);
  CHECK(h.target.kind == up::Target::Kind::ipv4);
  CHECK(h.target.host == "127.0.0.1");
  CHECK(h.target.port == 8080);
  CHECK(h.header_len == 10);

  Bytes v6 = {0, 0, 0, 4};
  for (int i = 0; i < 15; ++i) v6.push_back(0);
  v6.push_back(1);
  v6.push_back(0);
  v6.push_back(53);
  REQUIRE(parse_udp_header(v6, h) == UdpParse::ok);
  CHECK(h.target.kind == up::Target::Kind::ipv6);
  CHECK(h.target.host == "::1");
  CHECK(h.target.port == 53);
  CHECK(h.header_len == v6.size());  // an empty payload is a datagram too

  Bytes name = {0, 0, 0, 3, 8, 'd', 'n', 's', '.', 't', 'e', 's', 't', 0, 53, 'q'};
  REQUIRE(parse_udp_header(name, h) == UdpParse::ok);
  CHECK(h.target.kind == up::Target::Kind::domain);
  CHECK(h.target.host == "dns.test");
  CHECK(h.header_len == 15);

  // A literal sent as a name is that literal.
  Bytes lit = {0, 0, 0, 3, 7, '1', '.', '2', '.', '3', '.', '4', 0, 1};
  REQUIRE(parse_udp_header(lit, h) == UdpParse::ok);
  CHECK(h.target.kind == up::Target::Kind::ipv4);
}

TEST_CASE("udp header: FRAG is reported, not judged") {
  UdpHeader h;
  Bytes frag = {0, 0, 1, 1, 10, 0, 0, 1, 0, 53};
  REQUIRE(parse_udp_header(frag, h) == UdpParse::ok);
  CHECK(h.frag == 1);
}

TEST_CASE("udp header: short datagrams, unknown ATYP, a domain longer than the datagram") {
  UdpHeader h;
  Bytes v4 = {0, 0, 0, 1, 127, 0, 0, 1, 0, 53};
  for (size_t n = 0; n < v4.size(); ++n) {
    CAPTURE(n);
    CHECK(parse_udp_header(prefix(v4, n), h) == UdpParse::truncated);
  }
  CHECK(parse_udp_header(Bytes{0, 0, 0, 2, 1, 2, 3, 4, 0, 53}, h) == UdpParse::bad_atyp);
  CHECK(parse_udp_header(Bytes{0, 0, 0, 0}, h) == UdpParse::bad_atyp);
  // The name claims 200 bytes; the datagram has 5.
  CHECK(parse_udp_header(Bytes{0, 0, 0, 3, 200, 'a', 'b', 'c', 'd', 'e'}, h) ==
        UdpParse::truncated);
  CHECK(parse_udp_header(Bytes{0, 0, 0, 3}, h) == UdpParse::truncated);
  CHECK(parse_udp_header(Bytes{0, 0, 0, 3, 0, 0, 53}, h) == UdpParse::bad_name);
  CHECK(parse_udp_header(Bytes{0, 0, 0, 3, 3, 'a', ' ', 'b', 0, 53}, h) == UdpParse::bad_name);
}

TEST_CASE("udp header: encoders round trip") {
  up::Target t;
  REQUIRE(up::parse_authority("example.com:443", 0, t));
  uint8_t out[max_udp_header];
  size_t n = encode_udp_header(t, out);
  REQUIRE(n == 3 + 1 + 1 + 11 + 2);
  UdpHeader h;
  REQUIRE(parse_udp_header({out, n}, h) == UdpParse::ok);
  CHECK(h.target.host == "example.com");
  CHECK(h.target.port == 443);
  CHECK(h.header_len == n);

  sockaddr_in6 s6{};
  s6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr);
  s6.sin6_port = htons(5353);
  uint8_t hdr[22];
  n = encode_udp_header(reinterpret_cast<sockaddr*>(&s6), hdr);
  REQUIRE(n == 22);
  CHECK(hdr[0] == 0);
  CHECK(hdr[1] == 0);
  CHECK(hdr[2] == 0);
  REQUIRE(parse_udp_header({hdr, n}, h) == UdpParse::ok);
  CHECK(h.target.host == "2001:db8::7");
  CHECK(h.target.port == 5353);

  sockaddr_in s4{};
  s4.sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.1", &s4.sin_addr);
  s4.sin_port = htons(9);
  n = encode_udp_header(reinterpret_cast<sockaddr*>(&s4), hdr);
  REQUIRE(n == 10);
  REQUIRE(parse_udp_header({hdr, n}, h) == UdpParse::ok);
  CHECK(h.target.host == "192.0.2.1");
  CHECK(h.target.port == 9);
}

TEST_CASE("reply: BND.ADDR of a UDP ASSOCIATE answer") {
  Reply r;
  size_t consumed = 0;
  up::Target bound;
  Bytes ok = {5, 0, 0, 1, 127, 0, 0, 2, 0x04, 0x00};
  REQUIRE(parse_reply(ok, r, consumed, bound) == Parse::done);
  CHECK(r == Reply::succeeded);
  CHECK(consumed == ok.size());
  CHECK(bound.host == "127.0.0.2");
  CHECK(bound.port == 1024);
}

TEST_CASE("request: UDP ASSOCIATE naming something that is not a name means unspecified") {
  Request req;
  Reply rep;
  size_t consumed = 0;
  Bytes pysocks = {5, 3, 0, 3, 1, '0', 0x30, 0x39};  // what PySocks sends: "0", its port
  REQUIRE(parse_request(pysocks, req, consumed, rep) == Parse::done);
  CHECK(req.cmd == Command::udp_associate);
  CHECK(req.target.host == "0.0.0.0");
  CHECK(req.target.port == 12345);
  Bytes connect = {5, 1, 0, 3, 1, '0', 0x30, 0x39};
  CHECK(parse_request(connect, req, consumed, rep) == Parse::error);
}
