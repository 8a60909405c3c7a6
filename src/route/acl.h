#pragma once
// Which targets a user may reach. Issue 2 lands the built-in private ranges (deny_private),
// checked on literal targets and on every resolved address (DNS rebinding), with IPv4-mapped
// IPv6 unwrapped first; allow entries that are CIDRs open the ranges they cover.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

namespace up {

struct Cidr {
  uint8_t family = 0;  // AF_INET or AF_INET6
  uint8_t prefix = 0;
  uint8_t addr[16] = {};
  bool contains(const uint8_t* a, int family) const;
  static bool parse(const std::string& text, Cidr& out);
};

class Acl {
 public:
  Acl() = default;
  Acl(bool deny_private, const std::vector<std::string>& allow, const std::vector<std::string>& deny);

  // True if uringproxy may connect to this resolved address.
  bool address_allowed(const sockaddr* sa) const;

 private:
  bool deny_private_ = true;
  std::vector<Cidr> allow_;
  std::vector<Cidr> deny_;
};

// True for loopback, RFC 1918, link-local, CGNAT, unique-local, multicast, unspecified,
// broadcast, and the other special-use ranges a user must never reach on the proxy host.
bool is_private_address(const uint8_t* addr, int family);

}  // namespace up
