#pragma once
// Where a client wants to go: a literal address or a name to resolve, and a port.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace up {

struct Target {
  enum class Kind : uint8_t { ipv4, ipv6, domain };
  Kind kind = Kind::domain;
  std::string host;       // the name, or the address in text form ("1.2.3.4", "::1")
  uint8_t ip[16] = {};    // network order; 4 bytes used for ipv4
  uint16_t port = 0;      // host order

  bool is_literal() const { return kind != Kind::domain; }
  // A literal target's address (port 0) in `out`; returns its length.
  socklen_t to_sockaddr(sockaddr_storage& out) const;
  // "host:port", with brackets around IPv6 ("[::1]:443"), as logged and sent upstream.
  std::string to_string() const;
  bool operator==(const Target&) const = default;
};

// Parses "host:port", "[v6]:port", "1.2.3.4:port"; a missing port takes default_port
// (0 = port required). Literal IPv4/IPv6 are recognised strictly (inet_pton); anything else
// is a domain name and must be a valid DNS name (letters, digits, '-', '_', '.'; <= 253 bytes).
bool parse_authority(std::string_view authority, uint16_t default_port, Target& out);

// Sets kind/ip/host from a text host (no port): literal if inet_pton accepts it, else domain.
bool set_host(std::string_view host, Target& out);

// The address-type bytes of a wire format that sends a target as ATYP then the address
// (SOCKS5: 1, 3, 4; VLESS: 1, 2, 3).
struct AddressTypes {
  uint8_t ipv4, domain, ipv6;
};

// Writes ATYP and the address (a name after its length byte), not the port: at most 257 bytes.
// Returns the bytes written, 0 for a name that cannot be sent (empty or over 255 bytes).
size_t write_address(const Target& t, AddressTypes types, uint8_t* out);

}  // namespace up
