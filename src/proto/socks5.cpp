// SOCKS5 (RFC 1928) and username/password auth (RFC 1929). Each parser checks every byte as
// soon as it has arrived, so a bad version or command is refused without waiting for the rest.
#include "uringproxy/socks5.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace up::socks5 {
namespace {

constexpr uint8_t version5 = 0x05;
constexpr uint8_t userpass_version = 0x01;
constexpr uint8_t atyp_ipv4 = 0x01;
constexpr uint8_t atyp_domain = 0x03;
constexpr uint8_t atyp_ipv6 = 0x04;

// Length of ATYP + DST.ADDR + DST.PORT once enough bytes are there to know it; 0 if not yet.
// `atyp_at` indexes the ATYP byte in `in`.
size_t address_len(std::span<const uint8_t> in, size_t atyp_at) {
  switch (in[atyp_at]) {
    case atyp_ipv4: return 1 + 4 + 2;
    case atyp_ipv6: return 1 + 16 + 2;
    case atyp_domain:
      if (in.size() <= atyp_at + 1) return 0;
      return 1 + 1 + size_t{in[atyp_at + 1]} + 2;
    default: return 0;
  }
}

uint16_t read_port(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// ATYP, DST.ADDR, DST.PORT; 0 for a name that cannot be sent.
size_t write_address(const Target& t, uint8_t* out) {
  size_t n = up::write_address(t, {atyp_ipv4, atyp_domain, atyp_ipv6}, out);
  if (n == 0) return 0;
  out[n++] = static_cast<uint8_t>(t.port >> 8);
  out[n++] = static_cast<uint8_t>(t.port);
  return n;
}

// ATYP DST.ADDR DST.PORT at `a` (its length already checked) into `t`; false for a domain that
// is not a valid name.
bool read_address(const uint8_t* a, Target& t) {
  uint8_t atyp = a[0];
  ++a;
  switch (atyp) {
    case atyp_ipv4:
    case atyp_ipv6: {
      size_t n = atyp == atyp_ipv4 ? 4 : 16;
      char text[INET6_ADDRSTRLEN];
      inet_ntop(n == 4 ? AF_INET : AF_INET6, a, text, sizeof text);
      t.kind = n == 4 ? Target::Kind::ipv4 : Target::Kind::ipv6;
      std::memset(t.ip, 0, sizeof t.ip);
      std::memcpy(t.ip, a, n);
      t.host.assign(text);
      t.port = read_port(a + n);
      return true;
    }
    case atyp_domain: {
      size_t n = a[0];
      if (n == 0) return false;
      std::string_view name(reinterpret_cast<const char*>(a + 1), n);
      // A literal sent as a name ("1.2.3.4" with ATYP 3) becomes a literal target.
      if (!set_host(name, t)) return false;
      t.port = read_port(a + 1 + n);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

Parse parse_greeting(std::span<const uint8_t> in, Greeting& out, size_t& consumed) {
  consumed = 0;
  if (in.empty()) return Parse::need_more;
  if (in[0] != version5) return Parse::error;
  if (in.size() < 2) return Parse::need_more;
  size_t n = in[1];
  if (n == 0) return Parse::error;
  if (in.size() < 2 + n) return Parse::need_more;
  Greeting g;
  for (size_t i = 0; i < n; ++i) {
    g.no_auth = g.no_auth || in[2 + i] == method_no_auth;
    g.userpass = g.userpass || in[2 + i] == method_userpass;
  }
  out = g;
  consumed = 2 + n;
  return Parse::done;
}

Parse parse_userpass(std::span<const uint8_t> in, Credentials& out, size_t& consumed) {
  consumed = 0;
  if (in.empty()) return Parse::need_more;
  if (in[0] != userpass_version) return Parse::error;
  if (in.size() < 2) return Parse::need_more;
  size_t ulen = in[1];
  if (ulen == 0) return Parse::error;
  if (in.size() < 2 + ulen + 1) return Parse::need_more;
  size_t plen = in[2 + ulen];
  size_t total = 3 + ulen + plen;
  if (in.size() < total) return Parse::need_more;
  const char* base = reinterpret_cast<const char*>(in.data());
  std::string_view user(base + 2, ulen), pass(base + 3 + ulen, plen);
  // A NUL would cut the password short where it becomes a C string (crypt(3)): refuse it, as
  // the HTTP Basic path does.
  if (user.find('\0') != std::string_view::npos || pass.find('\0') != std::string_view::npos)
    return Parse::error;
  out.username = user;
  out.password = pass;
  consumed = total;
  return Parse::done;
}

Parse parse_request(std::span<const uint8_t> in, Request& out, size_t& consumed, Reply& reply) {
  consumed = 0;
  reply = Reply::general_failure;
  if (in.empty()) return Parse::need_more;
  if (in[0] != version5) return Parse::error;
  if (in.size() < 2) return Parse::need_more;
  if (in[1] < 1 || in[1] > 3) {
    reply = Reply::cmd_not_supported;
    return Parse::error;
  }
  if (in.size() < 3) return Parse::need_more;
  if (in[2] != 0) return Parse::error;
  if (in.size() < 4) return Parse::need_more;
  uint8_t atyp = in[3];
  if (atyp != atyp_ipv4 && atyp != atyp_ipv6 && atyp != atyp_domain) {
    reply = Reply::atyp_not_supported;
    return Parse::error;
  }
  if (atyp == atyp_domain && in.size() >= 5 && in[4] == 0) return Parse::error;
  size_t alen = address_len(in, 3);
  if (alen == 0 || in.size() < 3 + alen) return Parse::need_more;

  if (!read_address(in.data() + 3, out.target)) {
    // UDP ASSOCIATE's address only says where the client will send from, and clients put
    // names there that are none (PySocks sends "0"): that is "not known", all zeros.
    if (in[1] != static_cast<uint8_t>(Command::udp_associate) || atyp != atyp_domain)
      return Parse::error;
    set_host("0.0.0.0", out.target);
    out.target.port = read_port(in.data() + 3 + alen - 2);
  }
  out.cmd = static_cast<Command>(in[1]);
  reply = Reply::succeeded;
  consumed = 3 + alen;
  return Parse::done;
}

size_t encode_method_choice(uint8_t method, uint8_t out[2]) {
  out[0] = version5;
  out[1] = method;
  return 2;
}

size_t encode_auth_status(bool ok, uint8_t out[2]) {
  out[0] = userpass_version;
  out[1] = ok ? 0x00 : 0x01;
  return 2;
}

size_t encode_reply(Reply code, const sockaddr* bound, uint8_t out[22]) {
  out[0] = version5;
  out[1] = static_cast<uint8_t>(code);
  out[2] = 0;
  if (bound != nullptr && bound->sa_family == AF_INET6) {
    sockaddr_in6 s6;
    std::memcpy(&s6, bound, sizeof s6);
    out[3] = atyp_ipv6;
    std::memcpy(out + 4, &s6.sin6_addr, 16);
    std::memcpy(out + 20, &s6.sin6_port, 2);  // already network order
    return 22;
  }
  out[3] = atyp_ipv4;
  if (bound != nullptr && bound->sa_family == AF_INET) {
    sockaddr_in s4;
    std::memcpy(&s4, bound, sizeof s4);
    std::memcpy(out + 4, &s4.sin_addr, 4);
    std::memcpy(out + 8, &s4.sin_port, 2);
  } else {
    std::memset(out + 4, 0, 6);
  }
  return 10;
}

size_t encode_greeting(bool with_userpass, uint8_t out[4]) {
  out[0] = version5;
  if (with_userpass) {
    out[1] = 2;
    out[2] = method_no_auth;
    out[3] = method_userpass;
    return 4;
  }
  out[1] = 1;
  out[2] = method_no_auth;
  return 3;
}

size_t encode_userpass(std::string_view user, std::string_view pass, uint8_t* out) {
  if (user.size() > 255 || pass.size() > 255) return 0;
  size_t n = 0;
  out[n++] = userpass_version;
  out[n++] = static_cast<uint8_t>(user.size());
  std::memcpy(out + n, user.data(), user.size());
  n += user.size();
  out[n++] = static_cast<uint8_t>(pass.size());
  std::memcpy(out + n, pass.data(), pass.size());
  n += pass.size();
  return n;
}

size_t encode_request(Command cmd, const Target& target, uint8_t* out) {
  out[0] = version5;
  out[1] = static_cast<uint8_t>(cmd);
  out[2] = 0;
  size_t n = write_address(target, out + 3);
  return n == 0 ? 0 : 3 + n;
}

Parse parse_reply(std::span<const uint8_t> in, Reply& reply, size_t& consumed) {
  Target ignored;
  return parse_reply(in, reply, consumed, ignored);
}

Parse parse_reply(std::span<const uint8_t> in, Reply& reply, size_t& consumed, Target& bound) {
  consumed = 0;
  reply = Reply::general_failure;
  if (in.empty()) return Parse::need_more;
  if (in[0] != version5) return Parse::error;
  if (in.size() < 4) return Parse::need_more;
  // RSV is not checked: some servers send garbage there and it carries nothing.
  uint8_t atyp = in[3];
  if (atyp != atyp_ipv4 && atyp != atyp_ipv6 && atyp != atyp_domain) return Parse::error;
  size_t alen = address_len(in, 3);
  if (alen == 0 || in.size() < 3 + alen) return Parse::need_more;
  // A name that does not parse leaves `bound` empty (kind domain, no host): callers that need
  // the address refuse it; CONNECT callers never look.
  bound = Target{};
  if (!read_address(in.data() + 3, bound)) bound = Target{};
  reply = static_cast<Reply>(in[1]);
  consumed = 3 + alen;
  return Parse::done;
}

UdpParse parse_udp_header(std::span<const uint8_t> in, UdpHeader& out) {
  // RSV is not checked (RFC 1928 says X'0000', but nothing depends on it and clients differ).
  if (in.size() < 4) return UdpParse::truncated;
  uint8_t atyp = in[3];
  if (atyp != atyp_ipv4 && atyp != atyp_ipv6 && atyp != atyp_domain) return UdpParse::bad_atyp;
  size_t alen = address_len(in, 3);
  if (alen == 0 || in.size() < 3 + alen) return UdpParse::truncated;
  UdpHeader h;
  h.frag = in[2];
  if (!read_address(in.data() + 3, h.target)) return UdpParse::bad_name;
  h.header_len = 3 + alen;
  out = std::move(h);
  return UdpParse::ok;
}

size_t encode_udp_header(const Target& target, uint8_t* out) {
  out[0] = out[1] = out[2] = 0;
  size_t n = write_address(target, out + 3);
  return n == 0 ? 0 : 3 + n;
}

size_t encode_udp_header(const sockaddr* from, uint8_t out[22]) {
  // The reply encoder writes VER REP RSV ATYP ADDR PORT; a UDP header is RSV RSV FRAG and the
  // same address, so only the first three bytes differ.
  size_t n = encode_reply(Reply::succeeded, from, out);
  out[0] = out[1] = out[2] = 0;
  return n;
}

}  // namespace up::socks5
