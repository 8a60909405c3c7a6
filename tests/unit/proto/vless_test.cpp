// Tests for src/proto/vless.cpp. The byte vectors follow v2ray's EncodeRequestHeader
// (proxy/vless/encoding/encoding.go): VER, ID, addons length 0, CMD, then PORT before
// ATYP/ADDR (common/protocol/address.go, PortThenAddress) with ATYP 1 IPv4, 2 domain, 3 IPv6.
#include "uringproxy/vless.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace up::vless;
using Bytes = std::vector<uint8_t>;

namespace {

// The id of v2ray's documentation examples.
const char* const kIdText = "b831381d-6324-4d53-ad4f-8cda48b30811";
const Bytes kId = {0xb8, 0x31, 0x38, 0x1d, 0x63, 0x24, 0x4d, 0x53,
                   0xad, 0x4f, 0x8c, 0xda, 0x48, 0xb3, 0x08, 0x11};

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

// VER ID: the first 17 bytes of every request.
Bytes head() { return cat({0x00}, kId); }

// v2ray's TestRequestSerialization request: TCP to www.v2fly.org:443, no addons.
Bytes tcp_domain() {
  return cat(cat(head(), {0x00, 0x01, 0x01, 0xbb, 0x02, 13}), text("www.v2fly.org"));
}

Parse parse(const Bytes& b, Request& r, size_t& consumed, Error& e) {
  return parse_request({b.data(), b.size()}, r, consumed, e);
}

// Every strict prefix of a valid header is need_more and consumes nothing.
void check_truncations(const Bytes& msg) {
  for (size_t n = 0; n < msg.size(); ++n) {
    CAPTURE(n);
    Request r;
    size_t consumed = 99;
    Error e = Error::bad_version;
    CHECK(parse_request({msg.data(), n}, r, consumed, e) == Parse::need_more);
    CHECK(consumed == 0);
    CHECK(e == Error::none);
  }
}

Error parse_error(const Bytes& b) {
  Request r;
  size_t consumed = 99;
  Error e = Error::none;
  REQUIRE(parse(b, r, consumed, e) == Parse::error);
  CHECK(consumed == 0);
  return e;
}

}  // namespace

TEST_CASE("request: TCP to a domain, byte for byte as v2ray encodes it") {
  Bytes msg = tcp_domain();
  REQUIRE(msg.size() == 36);
  Request r;
  size_t consumed = 0;
  Error e = Error::bad_command;
  REQUIRE(parse(msg, r, consumed, e) == Parse::done);
  CHECK(e == Error::none);
  CHECK(consumed == 36);
  CHECK(Bytes(r.id.begin(), r.id.end()) == kId);
  CHECK(r.cmd == Command::tcp);
  CHECK(r.addons_len == 0);
  CHECK(r.target.kind == up::Target::Kind::domain);
  CHECK(r.target.host == "www.v2fly.org");
  CHECK(r.target.port == 443);
  check_truncations(msg);

  uint8_t out[max_request_size];
  size_t n = encode_request(r, out);
  CHECK(Bytes(out, out + n) == msg);
}

TEST_CASE("request: UDP to IPv4") {
  Bytes msg = cat(head(), {0x00, 0x02, 0x00, 0x35, 0x01, 8, 8, 4, 4});
  Request r;
  size_t consumed = 0;
  Error e;
  REQUIRE(parse(msg, r, consumed, e) == Parse::done);
  CHECK(consumed == 26);
  CHECK(r.cmd == Command::udp);
  CHECK(r.target.kind == up::Target::Kind::ipv4);
  CHECK(r.target.host == "8.8.4.4");
  CHECK(r.target.port == 53);
  const uint8_t want[4] = {8, 8, 4, 4};
  CHECK(std::memcmp(r.target.ip, want, 4) == 0);
  check_truncations(msg);
  uint8_t out[max_request_size];
  CHECK(Bytes(out, out + encode_request(r, out)) == msg);
}

TEST_CASE("request: TCP to IPv6") {
  Bytes addr = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  Bytes msg = cat(cat(head(), {0x00, 0x01, 0x20, 0xfb, 0x03}), addr);
  Request r;
  size_t consumed = 0;
  Error e;
  REQUIRE(parse(msg, r, consumed, e) == Parse::done);
  CHECK(consumed == 38);
  CHECK(r.target.kind == up::Target::Kind::ipv6);
  CHECK(r.target.host == "2001:db8::1");
  CHECK(r.target.port == 8443);
  CHECK(r.target.to_string() == "[2001:db8::1]:8443");
  check_truncations(msg);
  uint8_t out[max_request_size];
  CHECK(Bytes(out, out + encode_request(r, out)) == msg);
}

TEST_CASE("request: mux carries no address; the caller refuses it") {
  // encoding.go writes no port or address for RequestCommandMux.
  Bytes msg = cat(head(), {0x00, 0x03});
  Request r;
  size_t consumed = 0;
  Error e;
  REQUIRE(parse(cat(msg, {0xde, 0xad}), r, consumed, e) == Parse::done);
  CHECK(consumed == 19);
  CHECK(r.cmd == Command::mux);
  CHECK(r.target.host.empty());
  CHECK(r.target.port == 0);
  check_truncations(msg);
  uint8_t out[max_request_size];
  CHECK(Bytes(out, out + encode_request(r, out)) == msg);
}

TEST_CASE("request: addons are skipped (Xray's Vision flow)") {
  // Addons{Flow: "xtls-rprx-vision"} in protobuf: field 1, wire type 2, length 16.
  Bytes addons = cat({0x0a, 16}, text("xtls-rprx-vision"));
  Bytes msg = cat(cat(cat(head(), {static_cast<uint8_t>(addons.size())}), addons),
                  {0x01, 0x00, 0x50, 0x01, 127, 0, 0, 1});
  Request r;
  size_t consumed = 0;
  Error e;
  REQUIRE(parse(msg, r, consumed, e) == Parse::done);
  CHECK(consumed == msg.size());
  CHECK(r.addons_len == 18);
  CHECK(r.cmd == Command::tcp);
  CHECK(r.target.to_string() == "127.0.0.1:80");
  check_truncations(msg);
}

TEST_CASE("request: the longest header (255 bytes of addons and of name)") {
  std::string name;
  while (name.size() < 255) name += name.size() % 64 == 63 ? '.' : 'a';
  Bytes msg = cat(head(), {255});
  msg.resize(msg.size() + 255, 0x11);
  msg = cat(cat(msg, {0x01, 0x01, 0xbb, 0x02, 255}), text(name));
  CHECK(msg.size() == max_request_size);
  Request r;
  size_t consumed = 0;
  Error e;
  Parse p = parse(msg, r, consumed, e);
  // 255 bytes is over the 253 a DNS name may have: refused, but only once it is all there.
  CHECK(p == Parse::error);
  CHECK(e == Error::bad_address);
  check_truncations(msg);

  // Two bytes shorter, the name is a valid one.
  name.resize(253);
  msg.resize(msg.size() - 256);
  msg = cat(cat(msg, {253}), text(name));
  REQUIRE(parse(msg, r, consumed, e) == Parse::done);
  CHECK(consumed == max_request_size - 2);
  CHECK(r.addons_len == 255);
  CHECK(r.target.host == name);
}

TEST_CASE("request: first bytes of the payload stay unconsumed") {
  Bytes msg = cat(tcp_domain(), text("GET / HTTP/1.1\r\n"));
  Request r;
  size_t consumed = 0;
  Error e;
  REQUIRE(parse(msg, r, consumed, e) == Parse::done);
  CHECK(consumed == 36);
}

TEST_CASE("request: a domain that is a literal becomes a literal target") {
  Bytes msg = cat(cat(head(), {0x00, 0x01, 0x00, 0x50, 0x02, 8}), text("10.0.0.1"));
  Request r;
  size_t consumed = 0;
  Error e;
  REQUIRE(parse(msg, r, consumed, e) == Parse::done);
  CHECK(r.target.kind == up::Target::Kind::ipv4);
  CHECK(r.target.host == "10.0.0.1");
}

TEST_CASE("request: errors, each as soon as the deciding byte arrives") {
  CHECK(parse_error({0x01}) == Error::bad_version);
  CHECK(parse_error({0x05, 0x01, 0x00}) == Error::bad_version);  // a SOCKS5 greeting
  CHECK(parse_error(text("GET / HTTP/1.1\r\n")) == Error::bad_version);
  CHECK(parse_error(cat(head(), {0x00, 0x00})) == Error::bad_command);
  CHECK(parse_error(cat(head(), {0x00, 0x04})) == Error::bad_command);
  CHECK(parse_error(cat(head(), {0x02, 0xaa, 0xbb, 0xff})) == Error::bad_command);
  // SOCKS5's ATYP numbers are not VLESS's: 4 is nothing here.
  CHECK(parse_error(cat(head(), {0x00, 0x01, 0x00, 0x50, 0x04})) == Error::bad_address_type);
  CHECK(parse_error(cat(head(), {0x00, 0x01, 0x00, 0x50, 0x00})) == Error::bad_address_type);
  CHECK(parse_error(cat(head(), {0x00, 0x01, 0x00, 0x50, 0x02, 0})) == Error::bad_address);
  CHECK(parse_error(cat(cat(head(), {0x00, 0x01, 0x00, 0x50, 0x02, 9}), text("bad name!"))) ==
        Error::bad_address);
  // Loose IPv4 forms that a resolver would read as an address are not names.
  CHECK(parse_error(cat(cat(head(), {0x00, 0x01, 0x00, 0x50, 0x02, 5}), text("127.1"))) ==
        Error::bad_address);
  CHECK(std::string(error_text(Error::bad_version)).find("version") != std::string::npos);
}

TEST_CASE("read_id: the id from the first 17 bytes, before the rest arrives") {
  Bytes msg = tcp_domain();
  Uuid id = read_id(std::span<const uint8_t>(msg).first<id_size>());
  CHECK(Bytes(id.begin(), id.end()) == kId);
}

TEST_CASE("response header is 00 00") {
  uint8_t out[2] = {0xff, 0xff};
  REQUIRE(encode_response(out) == 2);
  CHECK(out[0] == 0x00);
  CHECK(out[1] == 0x00);
}

TEST_CASE("uuid: text to bytes and back") {
  Uuid id;
  REQUIRE(parse_uuid(kIdText, id));
  CHECK(Bytes(id.begin(), id.end()) == kId);
  CHECK(format_uuid(id) == kIdText);
  REQUIRE(parse_uuid("B831381D-6324-4D53-AD4F-8CDA48B30811", id));
  CHECK(format_uuid(id) == kIdText);

  Uuid untouched{};
  CHECK_FALSE(parse_uuid("", untouched));
  CHECK_FALSE(parse_uuid("b831381d63244d53ad4f8cda48b30811", untouched));  // no dashes
  CHECK_FALSE(parse_uuid("b831381d-6324-4d53-ad4f-8cda48b3081", untouched));
  CHECK_FALSE(parse_uuid("b831381d-6324-4d53-ad4f-8cda48b308111", untouched));
  CHECK_FALSE(parse_uuid("b831381d-6324-4d53-ad4f-8cda48b3081g", untouched));
  CHECK_FALSE(parse_uuid("b831381d6-324-4d53-ad4f-8cda48b30811", untouched));
  CHECK_FALSE(parse_uuid("b831381d-6324-4d53-ad4f+8cda48b30811", untouched));
  CHECK(untouched == Uuid{});
}

TEST_CASE("datagram: 2-byte big-endian length, then the payload") {
  Bytes msg = cat({0x00, 0x05}, text("hello"));
  Bytes two = cat(msg, cat({0x00, 0x00}, {0x01, 0x00}));  // hello, empty, then 256 bytes...
  std::span<const uint8_t> payload;
  size_t consumed = 0;
  REQUIRE(parse_datagram(two, payload, consumed) == Parse::done);
  CHECK(consumed == 7);
  CHECK(Bytes(payload.begin(), payload.end()) == text("hello"));
  std::span<const uint8_t> rest = std::span<const uint8_t>(two).subspan(consumed);
  REQUIRE(parse_datagram(rest, payload, consumed) == Parse::done);
  CHECK(consumed == 2);
  CHECK(payload.empty());
  rest = rest.subspan(consumed);
  CHECK(parse_datagram(rest, payload, consumed) == Parse::need_more);  // ...not all there yet
  CHECK(consumed == 0);
  for (size_t n = 0; n < msg.size(); ++n) {
    CHECK(parse_datagram({msg.data(), n}, payload, consumed) == Parse::need_more);
  }

  uint8_t out[2 + 5];
  REQUIRE(encode_datagram(text("hello"), out) == 7);
  CHECK(Bytes(out, out + 7) == msg);
  uint8_t hdr[2];
  REQUIRE(encode_datagram_header(65535, hdr) == 2);
  CHECK(hdr[0] == 0xff);
  CHECK(hdr[1] == 0xff);
  CHECK(encode_datagram_header(65536, hdr) == 0);
}
