// Target addresses: "host:port" parsing and printing shared by SOCKS5, HTTP and the dialers.
#include "uringproxy/target.h"

#include <arpa/inet.h>

#include <cstring>

namespace up {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
         c == '_' || c == '.';
}

// Tries inet_pton on a copy (it wants a C string); an IPv6 address is reprinted with
// inet_ntop so that equal addresses always print the same way. IPv4 needs no reprint: inet_pton
// takes only the canonical dotted quad (four parts of 0-255, no leading zeros), which is what
// inet_ntop would print.
bool set_literal(std::string_view host, Target& out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (host.empty() || host.size() >= sizeof buf) return false;
  // inet_pton stops at a NUL: "1.2.3.4\0junk" (a name from the wire) is no literal.
  if (host.find('\0') != std::string_view::npos) return false;
  std::memcpy(buf, host.data(), host.size());
  buf[host.size()] = '\0';
  uint8_t addr[16];
  char text[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, buf, addr) == 1) {
    out.kind = Target::Kind::ipv4;
    std::memset(out.ip, 0, sizeof out.ip);
    std::memcpy(out.ip, addr, 4);
    out.host.assign(host.data(), host.size());
    return true;
  }
  if (inet_pton(AF_INET6, buf, addr) == 1) {
    out.kind = Target::Kind::ipv6;
    std::memcpy(out.ip, addr, 16);
    inet_ntop(AF_INET6, addr, text, sizeof text);
    out.host.assign(text);
    return true;
  }
  return false;
}

// A DNS name: labels of 1..63 name characters, at most one trailing dot, <= 253 bytes.
// A name whose last label looks numeric ("127.1", "0x7f.1") is refused: resolvers read those
// as IPv4 in inet_aton's loose forms, which would let a client dodge literal-address rules.
bool valid_domain(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return false;
  size_t label_len = 0;
  for (char c : host) {
    if (!is_name_char(c)) return false;
    if (c == '.') {
      if (label_len == 0) return false;
      label_len = 0;
    } else if (++label_len > 63) {
      return false;
    }
  }
  if (label_len == 0) return false;
  std::string_view last = host.substr(host.size() - label_len);
  bool all_digits = true;
  for (char c : last) all_digits = all_digits && is_digit(c);
  if (all_digits) return false;
  if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
    bool all_hex = true;
    for (char c : last.substr(2)) all_hex = all_hex && is_hex(c);
    if (all_hex) return false;
  }
  return true;
}

// 1..65535, decimal digits only.
bool parse_port(std::string_view text, uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  uint32_t v = 0;
  for (char c : text) {
    if (!is_digit(c)) return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

std::string Target::to_string() const {
  std::string s;
  s.reserve(host.size() + 8);
  if (kind == Kind::ipv6) {
    s += '[';
    s += host;
    s += ']';
  } else {
    s += host;
  }
  s += ':';
  s += std::to_string(port);
  return s;
}

bool set_host(std::string_view host, Target& out) {
  if (set_literal(host, out)) return true;
  if (!valid_domain(host)) return false;
  out.kind = Target::Kind::domain;
  std::memset(out.ip, 0, sizeof out.ip);
  out.host.assign(host.data(), host.size());
  return true;
}

size_t write_address(const Target& t, AddressTypes types, uint8_t* out) {
  switch (t.kind) {
    case Target::Kind::ipv4:
      out[0] = types.ipv4;
      std::memcpy(out + 1, t.ip, 4);
      return 1 + 4;
    case Target::Kind::ipv6:
      out[0] = types.ipv6;
      std::memcpy(out + 1, t.ip, 16);
      return 1 + 16;
    case Target::Kind::domain:
      if (t.host.empty() || t.host.size() > 255) return 0;
      out[0] = types.domain;
      out[1] = static_cast<uint8_t>(t.host.size());
      std::memcpy(out + 2, t.host.data(), t.host.size());
      return 2 + t.host.size();
  }
  return 0;
}

bool parse_authority(std::string_view authority, uint16_t default_port, Target& out) {
  std::string_view host;
  std::string_view rest;  // what follows the host: empty or ":port"
  bool bracketed = false;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(1, close - 1);
    rest = authority.substr(close + 1);
    bracketed = true;
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
  }
  uint16_t port = default_port;
  if (!rest.empty()) {
    if (rest.front() != ':') return false;
    rest.remove_prefix(1);
    // "host:" with an empty port means the default (RFC 3986 3.2.3).
    if (!rest.empty() && !parse_port(rest, port)) return false;
  }
  if (port == 0) return false;
  Target t;
  if (bracketed) {
    // Only IPv6 goes in brackets; zone ids and IPvFuture are not for a proxy target.
    if (!set_literal(host, t) || t.kind != Target::Kind::ipv6) return false;
  } else if (!set_host(host, t) || t.kind == Target::Kind::ipv6) {
    return false;  // unreachable for ipv6 (the colon split), kept for clarity
  }
  t.port = port;
  out = std::move(t);
  return true;
}

socklen_t Target::to_sockaddr(sockaddr_storage& out) const {
  memset(&out, 0, sizeof out);
  if (kind == Kind::ipv4) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
    v4->sin_family = AF_INET;
    memcpy(&v4->sin_addr, ip, 4);
    return sizeof(sockaddr_in);
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  v6->sin6_family = AF_INET6;
  memcpy(&v6->sin6_addr, ip, 16);
  return sizeof(sockaddr_in6);
}

}  // namespace up
