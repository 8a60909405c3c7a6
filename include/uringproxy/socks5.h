#pragma once
// SOCKS5 (RFC 1928) and username/password auth (RFC 1929): pure parsers and encoders.
// Parsers never touch a socket: they look at bytes and say "need more", "done" (with how many
// bytes they consumed) or "error" (with the reply the server should send, where one applies).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "uringproxy/target.h"

struct sockaddr;

namespace up::socks5 {

enum class Parse : uint8_t { need_more, done, error };

// Reply codes, docs/wire.md.
enum class Reply : uint8_t {
  succeeded = 0x00,
  general_failure = 0x01,
  not_allowed = 0x02,       // refused by rule: ACL, group not allowed, limit
  net_unreachable = 0x03,
  host_unreachable = 0x04,  // DNS failure
  refused = 0x05,
  timeout = 0x06,           // RFC 1928 "TTL expired"; used for connect timeouts
  cmd_not_supported = 0x07,
  atyp_not_supported = 0x08,
};

constexpr uint8_t method_no_auth = 0x00;
constexpr uint8_t method_userpass = 0x02;
constexpr uint8_t method_none_acceptable = 0xff;

struct Greeting {
  bool no_auth = false;   // client offers 0x00
  bool userpass = false;  // client offers 0x02
};
// VER=5 NMETHODS METHODS...; error if VER != 5 or NMETHODS == 0.
Parse parse_greeting(std::span<const uint8_t> in, Greeting& out, size_t& consumed);

struct Credentials {
  std::string_view username;  // views into the input buffer
  std::string_view password;
};
// VER=1 ULEN UNAME PLEN PASSWD; error if VER != 1, ULEN == 0 or either field holds a NUL (the
// server answers a failure status and closes).
Parse parse_userpass(std::span<const uint8_t> in, Credentials& out, size_t& consumed);

enum class Command : uint8_t { connect = 1, bind = 2, udp_associate = 3 };

struct Request {
  Command cmd = Command::connect;
  Target target;
};
// VER=5 CMD RSV ATYP DST.ADDR DST.PORT. On error `reply` says what to answer:
// unknown command -> cmd_not_supported, unknown ATYP -> atyp_not_supported,
// bad version/reserved byte/empty or invalid domain -> general_failure.
Parse parse_request(std::span<const uint8_t> in, Request& out, size_t& consumed, Reply& reply);

// Encoders write into `out` and return the number of bytes written.
size_t encode_method_choice(uint8_t method, uint8_t out[2]);
size_t encode_auth_status(bool ok, uint8_t out[2]);
// BND.ADDR/BND.PORT from `bound` (AF_INET or AF_INET6); nullptr encodes 0.0.0.0:0.
// `out` must hold 22 bytes.
size_t encode_reply(Reply code, const sockaddr* bound, uint8_t out[22]);

// Client side (for upstream dialers and the load tool): encoders for what a client sends.
size_t encode_greeting(bool with_userpass, uint8_t out[4]);
// Returns 0 if either field is longer than 255 bytes. `out` must hold 513 bytes.
size_t encode_userpass(std::string_view user, std::string_view pass, uint8_t* out);
// Domain targets are sent as names (ATYP 3). `out` must hold 262 bytes.
size_t encode_request(Command cmd, const Target& target, uint8_t* out);
// Parses the server's reply to a request: VER REP RSV ATYP BND.ADDR BND.PORT.
Parse parse_reply(std::span<const uint8_t> in, Reply& reply, size_t& consumed);
// The same, also giving BND.ADDR/BND.PORT (a UDP ASSOCIATE reply names the relay there).
Parse parse_reply(std::span<const uint8_t> in, Reply& reply, size_t& consumed, Target& bound);

// The header of a UDP datagram through a SOCKS5 relay (RFC 1928 section 7):
// RSV(2) FRAG ATYP DST.ADDR DST.PORT, then the payload. A datagram is whole, so there is no
// need_more: a header that does not fit in it is malformed.
enum class UdpParse : uint8_t {
  ok,
  truncated,  // shorter than its header (domain length included)
  bad_atyp,   // ATYP other than 1, 3 or 4
  bad_name,   // an empty or invalid domain name
};
struct UdpHeader {
  uint8_t frag = 0;  // non-zero: a fragment (the relay drops them; no reassembly)
  Target target;
  size_t header_len = 0;  // the payload starts here
};
UdpParse parse_udp_header(std::span<const uint8_t> in, UdpHeader& out);
constexpr size_t max_udp_header = 3 + 1 + 1 + 255 + 2;
// FRAG 0 and `target`; `out` must hold max_udp_header bytes. Returns 0 for a domain that
// cannot be encoded (empty or over 255 bytes).
size_t encode_udp_header(const Target& target, uint8_t* out);
// FRAG 0 and the address `from` (AF_INET or AF_INET6; anything else encodes 0.0.0.0:0);
// `out` must hold 22 bytes. What a relay puts in front of a datagram it hands to its client.
size_t encode_udp_header(const sockaddr* from, uint8_t out[22]);

}  // namespace up::socks5
