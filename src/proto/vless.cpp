// VLESS version 0, checked against v2ray's proxy/vless/encoding (encoding.go, addons.go) and
// common/protocol/address.go (port before address, ATYP 1/2/3).
#include "uringproxy/vless.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace up::vless {
namespace {

constexpr uint8_t version0 = 0x00;
constexpr uint8_t atyp_ipv4 = 0x01;
constexpr uint8_t atyp_domain = 0x02;
constexpr uint8_t atyp_ipv6 = 0x03;

uint16_t read_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_dash_position(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

}  // namespace

const char* error_text(Error e) {
  switch (e) {
    case Error::none: return "no error";
    case Error::bad_version: return "bad version (not VLESS 0)";
    case Error::bad_command: return "bad command";
    case Error::bad_address_type: return "bad address type";
    case Error::bad_address: return "bad address";
  }
  return "unknown error";
}

Parse parse_request(std::span<const uint8_t> in, Request& out, size_t& consumed, Error& error) {
  consumed = 0;
  error = Error::none;
  if (in.empty()) return Parse::need_more;
  if (in[0] != version0) {
    error = Error::bad_version;
    return Parse::error;
  }
  // VER ID ADDONS_LEN: the addons length is one byte, so the skip is bounded at 255.
  if (in.size() < id_size + 1) return Parse::need_more;
  size_t addons_len = in[id_size];
  size_t at = id_size + 1 + addons_len;  // the command byte
  if (in.size() <= at) return Parse::need_more;
  uint8_t cmd = in[at];
  if (cmd < 1 || cmd > 3) {
    error = Error::bad_command;
    return Parse::error;
  }
  size_t end = at + 1;
  Target t;
  if (cmd != static_cast<uint8_t>(Command::mux)) {
    // PORT(2) ATYP(1), then the address.
    if (in.size() < at + 4) return Parse::need_more;
    uint16_t port = read_u16(&in[at + 1]);
    uint8_t atyp = in[at + 3];
    const size_t addr_at = at + 4;
    switch (atyp) {
      case atyp_ipv4:
      case atyp_ipv6: {
        size_t n = atyp == atyp_ipv4 ? 4 : 16;
        if (in.size() < addr_at + n) return Parse::need_more;
        char text[INET6_ADDRSTRLEN];
        inet_ntop(n == 4 ? AF_INET : AF_INET6, &in[addr_at], text, sizeof text);
        t.kind = n == 4 ? Target::Kind::ipv4 : Target::Kind::ipv6;
        std::memcpy(t.ip, &in[addr_at], n);
        t.host.assign(text);
        end = addr_at + n;
        break;
      }
      case atyp_domain: {
        if (in.size() <= addr_at) return Parse::need_more;
        size_t n = in[addr_at];
        if (n == 0) {
          error = Error::bad_address;
          return Parse::error;
        }
        if (in.size() < addr_at + 1 + n) return Parse::need_more;
        std::string_view name(reinterpret_cast<const char*>(&in[addr_at + 1]), n);
        // A literal sent as a name becomes a literal target, as v2ray does.
        if (!set_host(name, t)) {
          error = Error::bad_address;
          return Parse::error;
        }
        end = addr_at + 1 + n;
        break;
      }
      default:
        error = Error::bad_address_type;
        return Parse::error;
    }
    t.port = port;
  }
  std::memcpy(out.id.data(), &in[1], out.id.size());
  out.cmd = static_cast<Command>(cmd);
  out.addons_len = static_cast<uint8_t>(addons_len);
  out.target = std::move(t);
  consumed = end;
  return Parse::done;
}

size_t encode_request(const Request& req, uint8_t* out) {
  size_t n = 0;
  out[n++] = version0;
  std::memcpy(out + n, req.id.data(), req.id.size());
  n += req.id.size();
  out[n++] = 0;  // no addons
  out[n++] = static_cast<uint8_t>(req.cmd);
  if (req.cmd == Command::mux) return n;
  const Target& t = req.target;
  out[n++] = static_cast<uint8_t>(t.port >> 8);
  out[n++] = static_cast<uint8_t>(t.port);
  size_t a = write_address(t, {atyp_ipv4, atyp_domain, atyp_ipv6}, out + n);
  return a == 0 ? 0 : n + a;
}

size_t encode_response(uint8_t out[2]) {
  out[0] = version0;
  out[1] = 0;  // no addons
  return 2;
}

bool parse_uuid(std::string_view text, Uuid& out) {
  if (text.size() != 36) return false;
  Uuid id;
  size_t b = 0;
  // Hex pairs never straddle a dash: every group has an even number of digits.
  for (size_t i = 0; i < text.size(); ++i) {
    if (is_dash_position(i)) {
      if (text[i] != '-') return false;
      continue;
    }
    int hi = hex_value(text[i]);
    int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    id[b++] = static_cast<uint8_t>(hi << 4 | lo);
    ++i;
  }
  out = id;
  return true;
}

std::string format_uuid(const Uuid& id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += digits[id[i] >> 4];
    s += digits[id[i] & 0xf];
  }
  return s;
}

Parse parse_datagram(std::span<const uint8_t> in, std::span<const uint8_t>& payload,
                     size_t& consumed) {
  consumed = 0;
  if (in.size() < 2) return Parse::need_more;
  size_t len = read_u16(in.data());
  if (in.size() < 2 + len) return Parse::need_more;
  payload = in.subspan(2, len);
  consumed = 2 + len;
  return Parse::done;
}

size_t encode_datagram_header(size_t len, uint8_t out[2]) {
  if (len > max_datagram_payload) return 0;
  out[0] = static_cast<uint8_t>(len >> 8);
  out[1] = static_cast<uint8_t>(len);
  return 2;
}

size_t encode_datagram(std::span<const uint8_t> payload, uint8_t* out) {
  if (encode_datagram_header(payload.size(), out) == 0) return 0;
  if (!payload.empty()) std::memcpy(out + 2, payload.data(), payload.size());
  return 2 + payload.size();
}

}  // namespace up::vless
