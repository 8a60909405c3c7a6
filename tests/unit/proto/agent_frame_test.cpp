// Tests for src/proto/agent_frame.cpp: byte layouts as docs/agent-protocol.md writes them, every
// message split at every byte, round trips, and each kind of garbage refused with its reason.
#include "proto/agent_frame.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace up::agent;
using Bytes = std::vector<uint8_t>;

namespace {

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

// HELLO for agent "home-1", secret "s3cret", software "up 1", control role.
Bytes hello_bytes() {
  Bytes body = cat(cat(cat(cat(text("UPAG"), {0x01, 0x01, 6}), text("home-1")),
                       cat({6}, text("s3cret"))),
                   cat({4}, text("up 1")));
  return cat({0x01, 0x00, static_cast<uint8_t>(body.size())}, body);
}

// TUNNEL id 7 to example.com:443.
Bytes tunnel_domain() {
  return cat({0x05, 0x00, 23, 0, 0, 0, 0, 0, 0, 0, 7, 0x01, 0xbb, 0x03, 11},
             text("example.com"));
}

Parse parse(const Bytes& b, Message& m, size_t& consumed, Error& e) {
  return parse_message({b.data(), b.size()}, m, consumed, e);
}

Message parse_ok(const Bytes& b) {
  Message m;
  size_t consumed = 0;
  Error e = Error::bad_type;
  REQUIRE(parse(b, m, consumed, e) == Parse::done);
  CHECK(e == Error::none);
  CHECK(consumed == b.size());
  return m;
}

Error parse_error(const Bytes& b) {
  Message m;
  size_t consumed = 99;
  Error e = Error::none;
  REQUIRE(parse(b, m, consumed, e) == Parse::error);
  CHECK(consumed == 0);
  return e;
}

// Every strict prefix is need_more and consumes nothing: a frame may arrive one byte at a time.
void check_truncations(const Bytes& msg) {
  for (size_t n = 0; n < msg.size(); ++n) {
    CAPTURE(n);
    Message m;
    size_t consumed = 99;
    Error e = Error::bad_type;
    CHECK(parse_message({msg.data(), n}, m, consumed, e) == Parse::need_more);
    CHECK(consumed == 0);
    CHECK(e == Error::none);
  }
}

Bytes encoded(const Message& m) {
  uint8_t out[max_frame];
  size_t n = encode(m, out);
  REQUIRE(n > 0);
  return Bytes(out, out + n);
}

}  // namespace

TEST_CASE("agent HELLO: layout, every split, round trip") {
  Bytes b = hello_bytes();
  check_truncations(b);
  Message m = parse_ok(b);
  const auto& h = std::get<Hello>(m);
  CHECK(h.version == 1);
  CHECK(h.role == Role::control);
  CHECK(h.id == "home-1");
  CHECK(h.secret == "s3cret");
  CHECK(h.software == "up 1");
  CHECK(encoded(m) == b);
}

TEST_CASE("agent frames: two in one buffer consume one at a time") {
  Bytes ping = {0x03, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8};
  Bytes both = cat(ping, tunnel_domain());
  Message m;
  size_t consumed = 0;
  Error e;
  REQUIRE(parse(both, m, consumed, e) == Parse::done);
  CHECK(consumed == ping.size());
  CHECK(std::get<Ping>(m).nonce == 0x0102030405060708ull);
  Bytes rest(both.begin() + static_cast<long>(consumed), both.end());
  Message t = parse_ok(rest);
  CHECK(std::get<Tunnel>(t).target.to_string() == "example.com:443");
}

TEST_CASE("agent TUNNEL: IPv4, IPv6 and domain targets") {
  SUBCASE("domain") {
    check_truncations(tunnel_domain());
    Message m = parse_ok(tunnel_domain());
    const auto& t = std::get<Tunnel>(m);
    CHECK(t.tunnel_id == 7);
    CHECK(t.target.kind == up::Target::Kind::domain);
    CHECK(encoded(m) == tunnel_domain());
  }
  SUBCASE("ipv4") {
    Bytes b = {0x05, 0x00, 15, 0, 0, 0, 0, 0, 0, 1, 0, 0x00, 0x50, 0x01, 192, 0, 2, 1};
    check_truncations(b);
    Message m = parse_ok(b);
    CHECK(std::get<Tunnel>(m).tunnel_id == 256);
    CHECK(std::get<Tunnel>(m).target.to_string() == "192.0.2.1:80");
    CHECK(encoded(m) == b);
  }
  SUBCASE("ipv6") {
    Bytes b = cat({0x05, 0x00, 27, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb, 0x04},
                  {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    Message m = parse_ok(b);
    CHECK(std::get<Tunnel>(m).target.to_string() == "[2001:db8::1]:443");
    CHECK(encoded(m) == b);
  }
}

TEST_CASE("agent AUTH_RESULT, STATUS, PONG and ERROR round trip") {
  Bytes auth = {0x02, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, 0x27, 0x10};
  check_truncations(auth);
  Message a = parse_ok(auth);
  CHECK(std::get<AuthResult>(a).heartbeat_ms == 10000);
  CHECK(encoded(a) == auth);

  Bytes status = {0x06, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 7, 0x05};
  Message s = parse_ok(status);
  CHECK(std::get<TunnelStatus>(s).code == Status::refused);
  CHECK(encoded(s) == status);

  Message pong = Pong{42};
  CHECK(std::get<Pong>(parse_ok(encoded(pong))).nonce == 42);

  Message err = ErrorFrame{ErrorCode::replaced, "another control connection for home-1"};
  Bytes eb = encoded(err);
  check_truncations(eb);
  CHECK(std::get<ErrorFrame>(parse_ok(eb)).text == "another control connection for home-1");
  // An empty text is allowed.
  CHECK(std::get<ErrorFrame>(parse_ok({0x07, 0x00, 0x01, 0x03})).code ==
        ErrorCode::heartbeat_timeout);
}

TEST_CASE("agent frames: garbage refused early, with its reason") {
  // Not an agent at all: refused on the first byte, before any length is waited for.
  CHECK(parse_error(text("G")) == Error::bad_type);
  CHECK(parse_error({0x16, 0x03, 0x01}) == Error::bad_type);  // a TLS record in the clear
  CHECK(parse_error({0x00}) == Error::bad_type);
  CHECK(parse_error({0x08}) == Error::bad_type);
  // Lengths out of the type's bounds: refused on the header alone.
  CHECK(parse_error({0x03, 0x00, 0x07}) == Error::bad_length);
  CHECK(parse_error({0x03, 0x00, 0x09}) == Error::bad_length);
  CHECK(parse_error({0x01, 0xff, 0xff}) == Error::bad_length);
  CHECK(parse_error({0x07, 0x00, 0x00}) == Error::bad_length);
  CHECK(parse_error({0x07, 0x01, 0x01}) == Error::bad_length);

  Bytes h = hello_bytes();
  SUBCASE("bad magic") {
    h[3] = 'X';
    CHECK(parse_error(h) == Error::bad_magic);
  }
  SUBCASE("version 0") {
    h[7] = 0;
    CHECK(parse_error(h) == Error::bad_field);
  }
  SUBCASE("role 3") {
    h[8] = 3;
    CHECK(parse_error(h) == Error::bad_field);
  }
  SUBCASE("id with a space") {
    h[10] = ' ';
    CHECK(parse_error(h) == Error::bad_string);
  }
  SUBCASE("a string running past the body") {
    h.back() = 0;
    h[h.size() - 5] = 5;  // software claims 5 bytes, 4 follow
    CHECK(parse_error(h) == Error::bad_string);
  }
  SUBCASE("trailing bytes") {
    h[2] += 1;
    h.push_back('x');
    CHECK(parse_error(h) == Error::trailing_bytes);
  }
  SUBCASE("software with a control byte (log injection)") {
    h.back() = '\n';
    CHECK(parse_error(h) == Error::bad_string);
  }
  SUBCASE("empty secret") {
    Hello bad{1, Role::reverse, "a", "", ""};
    uint8_t out[max_frame];
    CHECK(encode(bad, out) == 0);
    Bytes b = cat(text("UPAG"), {1, 2, 1, 'a', 0, 0});
    CHECK(parse_error(cat({0x01, 0x00, static_cast<uint8_t>(b.size())}, b)) ==
          Error::bad_length);
  }
}

TEST_CASE("agent TUNNEL and STATUS: bad fields refused") {
  Bytes t = tunnel_domain();
  SUBCASE("tunnel id 0") {
    t[10] = 0;
    CHECK(parse_error(t) == Error::bad_field);
  }
  SUBCASE("port 0") {
    t[11] = 0;
    t[12] = 0;
    CHECK(parse_error(t) == Error::bad_field);
  }
  SUBCASE("address type 2") {
    t[13] = 2;
    CHECK(parse_error(t) == Error::bad_field);
  }
  SUBCASE("name that is not a DNS name") {
    t[15] = '/';
    CHECK(parse_error(t) == Error::bad_string);
  }
  SUBCASE("ipv4 with a byte missing") {
    Bytes b = {0x05, 0x00, 14, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x50, 0x01, 192, 0, 2};
    CHECK(parse_error(b) == Error::bad_length);
  }
  CHECK(parse_error({0x06, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 7, 0x07}) == Error::bad_field);
  CHECK(parse_error({0x06, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 7, 0x09}) == Error::bad_field);
  CHECK(parse_error({0x06, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x00}) == Error::bad_field);
  // AUTH_RESULT: ok needs a heartbeat in bounds; a refusal carries none.
  CHECK(parse_error({0x02, 0x00, 0x06, 0x00, 0x01, 0, 0, 0, 0}) == Error::bad_field);
  CHECK(parse_error({0x02, 0x00, 0x06, 0x01, 0x01, 0, 0, 0x27, 0x10}) == Error::bad_field);
  CHECK(parse_error({0x02, 0x00, 0x06, 0x05, 0x01, 0, 0, 0, 0}) == Error::bad_field);
  CHECK(parse_error({0x07, 0x00, 0x01, 0x00}) == Error::bad_field);
  CHECK(parse_error({0x07, 0x00, 0x02, 0x01, 0x07}) == Error::bad_string);
}

TEST_CASE("agent encode refuses what cannot go on the wire") {
  uint8_t out[max_frame];
  CHECK(encode(Hello{1, Role::control, std::string(65, 'a'), "x", ""}, out) == 0);
  CHECK(encode(Hello{1, Role::control, "a:b", "x", ""}, out) == 0);
  CHECK(encode(Hello{1, Role::control, "a", std::string(256, 'x'), ""}, out) == 0);
  CHECK(encode(Hello{0, Role::control, "a", "x", ""}, out) == 0);
  CHECK(encode(AuthResult{AuthCode::ok, 1, 999}, out) == 0);
  CHECK(encode(AuthResult{AuthCode::denied, 1, 5000}, out) == 0);
  CHECK(encode(TunnelStatus{0, Status::connected}, out) == 0);
  CHECK(encode(TunnelStatus{1, static_cast<Status>(7)}, out) == 0);
  CHECK(encode(ErrorFrame{ErrorCode::removed, std::string(256, 'x')}, out) == 0);
  up::agent::Tunnel t;
  t.tunnel_id = 1;
  t.target.port = 80;
  t.target.host = "bad host";
  CHECK(encode(t, out) == 0);
  // The largest HELLO fits the bounds it is parsed with.
  Message big = Hello{1, Role::reverse, std::string(64, 'a'), std::string(255, 's'),
                      std::string(64, 'v')};
  Bytes b = encoded(big);
  CHECK(b.size() <= max_frame);
  CHECK(std::get<Hello>(parse_ok(b)).secret.size() == 255);
}

TEST_CASE("agent STATUS maps to the upstream replies") {
  CHECK(socks_reply(Status::refused) == 0x05);
  CHECK(socks_reply(Status::denied_by_acl) == 0x02);
  CHECK(http_status(Status::denied_by_acl) == 403);
  CHECK(http_status(Status::timeout) == 504);
  CHECK(http_status(Status::host_unreachable) == 502);
  CHECK(http_status(Status::connected) == 200);
}

TEST_CASE("agent ids") {
  CHECK(valid_agent_id("home-1"));
  CHECK(valid_agent_id("a.b_c"));
  CHECK_FALSE(valid_agent_id(""));
  CHECK_FALSE(valid_agent_id("a b"));
  CHECK_FALSE(valid_agent_id("agent:1"));
  CHECK_FALSE(valid_agent_id(std::string(65, 'a')));
}
