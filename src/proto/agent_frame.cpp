// The reverse agents' wire protocol, as docs/agent-protocol.md writes it down.
#include "proto/agent_frame.h"

#include <arpa/inet.h>

#include <cstring>

namespace up::agent {
namespace {

constexpr uint8_t kMagic[4] = {'U', 'P', 'A', 'G'};
constexpr uint8_t atyp_ipv4 = 0x01;
constexpr uint8_t atyp_domain = 0x03;
constexpr uint8_t atyp_ipv6 = 0x04;

// Body length bounds per type, checked as soon as the header is in.
struct Bounds {
  size_t min, max;
};
bool bounds_of(uint8_t type, Bounds& b) {
  switch (static_cast<Type>(type)) {
    // MAGIC VERSION ROLE, then three strings: id (1-64), secret (1-255), software (0-64).
    case Type::hello: b = {4 + 1 + 1 + 2 + 2 + 1, 4 + 1 + 1 + (1 + max_id) + (1 + max_secret) +
                                                       (1 + max_software)}; return true;
    case Type::auth_result: b = {6, 6}; return true;
    case Type::ping:
    case Type::pong: b = {8, 8}; return true;
    // TUNNEL_ID PORT ATYP, then 4 bytes, 1 + 1..255 bytes or 16 bytes.
    case Type::tunnel: b = {8 + 2 + 1 + 2, 8 + 2 + 1 + 1 + 255}; return true;
    case Type::status: b = {9, 9}; return true;
    case Type::error: b = {1, 1 + max_error_text}; return true;
  }
  return false;
}

bool printable(std::string_view s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

bool valid_status(uint8_t c) { return c <= 0x08 && c != 0x07; }
bool valid_auth_code(uint8_t c) { return c <= 4; }
bool valid_error_code(uint8_t c) { return c >= 1 && c <= 6; }

uint64_t read_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}
uint32_t read_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// Reads a body front to back; any read past the end sets `short_` and yields zeros, so each
// decoder checks once at the end instead of before every field.
class BodyReader {
 public:
  explicit BodyReader(std::span<const uint8_t> b) : b_(b) {}
  uint8_t u8() {
    if (!have(1)) return 0;
    return b_[at_++];
  }
  uint16_t u16() {
    if (!have(2)) return 0;
    uint16_t v = static_cast<uint16_t>(b_[at_] << 8 | b_[at_ + 1]);
    at_ += 2;
    return v;
  }
  uint32_t u32() {
    if (!have(4)) return 0;
    uint32_t v = read_u32(&b_[at_]);
    at_ += 4;
    return v;
  }
  uint64_t u64() {
    if (!have(8)) return 0;
    uint64_t v = read_u64(&b_[at_]);
    at_ += 8;
    return v;
  }
  std::string_view bytes(size_t n) {
    if (!have(n)) return {};
    std::string_view v(reinterpret_cast<const char*>(&b_[at_]), n);
    at_ += n;
    return v;
  }
  std::string_view string() { return bytes(u8()); }
  std::string_view rest() { return bytes(b_.size() - at_); }
  bool short_read() const { return short_; }
  bool at_end() const { return at_ == b_.size(); }

 private:
  bool have(size_t n) {
    if (short_ || b_.size() - at_ < n) {
      short_ = true;
      return false;
    }
    return true;
  }
  std::span<const uint8_t> b_;
  size_t at_ = 0;
  bool short_ = false;
};

Error decode_hello(BodyReader& r, Message& out) {
  if (r.bytes(4) != std::string_view(reinterpret_cast<const char*>(kMagic), 4))
    return Error::bad_magic;
  Hello h;
  h.version = r.u8();
  uint8_t role = r.u8();
  h.id = r.string();
  h.secret = r.string();
  h.software = r.string();
  if (r.short_read()) return Error::bad_string;
  if (h.version == 0 || (role != 1 && role != 2)) return Error::bad_field;
  h.role = static_cast<Role>(role);
  if (!valid_agent_id(h.id) || h.secret.empty() || h.software.size() > max_software ||
      !printable(h.software))
    return Error::bad_string;
  out = std::move(h);
  return Error::none;
}

Error decode_tunnel(BodyReader& r, Message& out) {
  Tunnel t;
  t.tunnel_id = r.u64();
  t.target.port = r.u16();
  uint8_t atyp = r.u8();
  if (t.tunnel_id == 0 || t.target.port == 0) return Error::bad_field;
  switch (atyp) {
    case atyp_ipv4: {
      std::string_view a = r.bytes(4);
      if (r.short_read()) return Error::bad_length;
      t.target.kind = Target::Kind::ipv4;
      std::memcpy(t.target.ip, a.data(), 4);
      break;
    }
    case atyp_ipv6: {
      std::string_view a = r.bytes(16);
      if (r.short_read()) return Error::bad_length;
      t.target.kind = Target::Kind::ipv6;
      std::memcpy(t.target.ip, a.data(), 16);
      break;
    }
    case atyp_domain: {
      std::string_view name = r.string();
      if (r.short_read()) return Error::bad_string;
      // set_host also recognises a literal sent as a name, as the SOCKS5 parser does.
      if (name.empty() || !set_host(name, t.target)) return Error::bad_string;
      break;
    }
    default: return Error::bad_field;
  }
  if (t.target.kind != Target::Kind::domain) {
    // The text form, printed as every other parser prints it.
    char text[INET6_ADDRSTRLEN];
    int af = t.target.kind == Target::Kind::ipv4 ? AF_INET : AF_INET6;
    if (inet_ntop(af, t.target.ip, text, sizeof text) == nullptr) return Error::bad_field;
    t.target.host = text;
  }
  out = std::move(t);
  return Error::none;
}

Error decode_body(uint8_t type, std::span<const uint8_t> body, Message& out) {
  BodyReader r(body);
  Error e = Error::none;
  switch (static_cast<Type>(type)) {
    case Type::hello: e = decode_hello(r, out); break;
    case Type::auth_result: {
      AuthResult a;
      uint8_t code = r.u8();
      a.version = r.u8();
      a.heartbeat_ms = r.u32();
      if (!valid_auth_code(code)) return Error::bad_field;
      a.code = static_cast<AuthCode>(code);
      if (a.code == AuthCode::ok
              ? (a.version == 0 || a.heartbeat_ms < min_heartbeat_ms ||
                 a.heartbeat_ms > max_heartbeat_ms)
              : a.heartbeat_ms != 0)
        return Error::bad_field;
      out = a;
      break;
    }
    case Type::ping: out = Ping{r.u64()}; break;
    case Type::pong: out = Pong{r.u64()}; break;
    case Type::tunnel: e = decode_tunnel(r, out); break;
    case Type::status: {
      TunnelStatus s;
      s.tunnel_id = r.u64();
      uint8_t code = r.u8();
      if (s.tunnel_id == 0 || !valid_status(code)) return Error::bad_field;
      s.code = static_cast<Status>(code);
      out = s;
      break;
    }
    case Type::error: {
      ErrorFrame f;
      uint8_t code = r.u8();
      f.text = r.rest();
      if (!valid_error_code(code)) return Error::bad_field;
      if (!printable(f.text)) return Error::bad_string;
      f.code = static_cast<ErrorCode>(code);
      out = std::move(f);
      break;
    }
    default: return Error::bad_type;
  }
  if (e != Error::none) return e;
  return r.at_end() ? Error::none : Error::trailing_bytes;
}

void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

// Appends to a body under construction; false once a field would not fit its bounds.
struct BodyWriter {
  uint8_t* p;
  size_t n = 0;
  void u8(uint8_t v) { p[n++] = v; }
  void u64(uint64_t v) {
    put_u64(p + n, v);
    n += 8;
  }
  void bytes(std::string_view s) {
    std::memcpy(p + n, s.data(), s.size());
    n += s.size();
  }
  bool string(std::string_view s, size_t max) {
    if (s.size() > max) return false;
    u8(static_cast<uint8_t>(s.size()));
    bytes(s);
    return true;
  }
};

// The body of `m` at `w`; false when a field cannot be encoded.
bool encode_body(const Message& m, BodyWriter& w) {
  if (const auto* h = std::get_if<Hello>(&m)) {
    if (h->version == 0 || (h->role != Role::control && h->role != Role::reverse) ||
        !valid_agent_id(h->id) || h->secret.empty() || !printable(h->software))
      return false;
    w.bytes(std::string_view(reinterpret_cast<const char*>(kMagic), 4));
    w.u8(h->version);
    w.u8(static_cast<uint8_t>(h->role));
    return w.string(h->id, max_id) && w.string(h->secret, max_secret) &&
           w.string(h->software, max_software);
  }
  if (const auto* a = std::get_if<AuthResult>(&m)) {
    if (!valid_auth_code(static_cast<uint8_t>(a->code))) return false;
    if (a->code == AuthCode::ok ? (a->version == 0 || a->heartbeat_ms < min_heartbeat_ms ||
                                   a->heartbeat_ms > max_heartbeat_ms)
                                : a->heartbeat_ms != 0)
      return false;
    w.u8(static_cast<uint8_t>(a->code));
    w.u8(a->version);
    put_u32(w.p + w.n, a->heartbeat_ms);
    w.n += 4;
    return true;
  }
  if (const auto* p = std::get_if<Ping>(&m)) {
    w.u64(p->nonce);
    return true;
  }
  if (const auto* p = std::get_if<Pong>(&m)) {
    w.u64(p->nonce);
    return true;
  }
  if (const auto* t = std::get_if<Tunnel>(&m)) {
    if (t->tunnel_id == 0 || t->target.port == 0) return false;
    w.u64(t->tunnel_id);
    put_u16(w.p + w.n, t->target.port);
    w.n += 2;
    switch (t->target.kind) {
      case Target::Kind::ipv4:
        w.u8(atyp_ipv4);
        w.bytes(std::string_view(reinterpret_cast<const char*>(t->target.ip), 4));
        return true;
      case Target::Kind::ipv6:
        w.u8(atyp_ipv6);
        w.bytes(std::string_view(reinterpret_cast<const char*>(t->target.ip), 16));
        return true;
      case Target::Kind::domain: {
        Target check;
        if (t->target.host.empty() || !set_host(t->target.host, check)) return false;
        w.u8(atyp_domain);
        return w.string(t->target.host, 255);
      }
    }
    return false;
  }
  if (const auto* s = std::get_if<TunnelStatus>(&m)) {
    if (s->tunnel_id == 0 || !valid_status(static_cast<uint8_t>(s->code))) return false;
    w.u64(s->tunnel_id);
    w.u8(static_cast<uint8_t>(s->code));
    return true;
  }
  const auto& f = std::get<ErrorFrame>(m);
  if (!valid_error_code(static_cast<uint8_t>(f.code)) || f.text.size() > max_error_text ||
      !printable(f.text))
    return false;
  w.u8(static_cast<uint8_t>(f.code));
  w.bytes(f.text);
  return true;
}

}  // namespace

Type type_of(const Message& m) {
  static constexpr Type kTypes[] = {Type::hello,  Type::auth_result, Type::ping, Type::pong,
                                    Type::tunnel, Type::status,      Type::error};
  return kTypes[m.index()];
}

const char* error_text(Error e) {
  switch (e) {
    case Error::none: return "no error";
    case Error::bad_type: return "unknown frame type";
    case Error::bad_length: return "frame length out of bounds for its type";
    case Error::bad_magic: return "HELLO without the agent magic (not an agent)";
    case Error::bad_field: return "field value not allowed";
    case Error::bad_string: return "string field malformed or out of bounds";
    case Error::trailing_bytes: return "bytes after the frame's last field";
  }
  return "unknown error";
}

Parse parse_message(std::span<const uint8_t> in, Message& out, size_t& consumed, Error& error) {
  consumed = 0;
  error = Error::none;
  if (in.empty()) return Parse::need_more;
  Bounds b;
  if (!bounds_of(in[0], b)) {
    error = Error::bad_type;
    return Parse::error;
  }
  if (in.size() < header_size) return Parse::need_more;
  size_t len = static_cast<size_t>(in[1] << 8 | in[2]);
  if (len < b.min || len > b.max) {
    error = Error::bad_length;
    return Parse::error;
  }
  if (in.size() < header_size + len) return Parse::need_more;
  error = decode_body(in[0], in.subspan(header_size, len), out);
  if (error != Error::none) return Parse::error;
  consumed = header_size + len;
  return Parse::done;
}

size_t encode(const Message& m, uint8_t* out) {
  BodyWriter w{out + header_size};
  if (!encode_body(m, w)) return 0;
  out[0] = static_cast<uint8_t>(type_of(m));
  put_u16(out + 1, static_cast<uint16_t>(w.n));
  return header_size + w.n;
}

bool valid_agent_id(std::string_view id) {
  if (id.empty() || id.size() > max_id) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

uint8_t socks_reply(Status s) { return static_cast<uint8_t>(s); }

int http_status(Status s) {
  switch (s) {
    case Status::connected: return 200;
    case Status::denied_by_acl: return 403;
    case Status::timeout: return 504;
    default: return 502;
  }
}

const char* status_text(Status s) {
  switch (s) {
    case Status::connected: return "connected";
    case Status::general_failure: return "general failure";
    case Status::denied_by_acl: return "refused by the agent's ACL";
    case Status::network_unreachable: return "network unreachable";
    case Status::host_unreachable: return "host unreachable";
    case Status::refused: return "connection refused";
    case Status::timeout: return "timeout";
    case Status::address_type_not_supported: return "address type not supported";
  }
  return "unknown status";
}

const char* auth_code_text(AuthCode c) {
  switch (c) {
    case AuthCode::ok: return "ok";
    case AuthCode::denied: return "denied";
    case AuthCode::unsupported_version: return "unsupported_version";
    case AuthCode::throttled: return "throttled";
    case AuthCode::no_control: return "no_control";
  }
  return "unknown";
}

const char* error_code_text(ErrorCode c) {
  switch (c) {
    case ErrorCode::protocol_error: return "protocol_error";
    case ErrorCode::unexpected_message: return "unexpected_message";
    case ErrorCode::heartbeat_timeout: return "heartbeat_timeout";
    case ErrorCode::replaced: return "replaced";
    case ErrorCode::removed: return "removed";
    case ErrorCode::shutting_down: return "shutting_down";
  }
  return "unknown";
}

}  // namespace up::agent
