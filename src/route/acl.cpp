#include "route/acl.h"

#include <arpa/inet.h>
#include <string.h>

#include <array>

namespace up {

bool Cidr::contains(const uint8_t* a, int fam) const {
  if (fam != family) return false;
  int full = prefix / 8, rest = prefix % 8;
  if (memcmp(a, addr, full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (addr[full] & mask);
}

bool Cidr::parse(const std::string& text, Cidr& out) {
  std::string ip = text;
  int prefix = -1;
  if (auto slash = text.find('/'); slash != std::string::npos) {
    ip = text.substr(0, slash);
    std::string p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos)
      return false;
    prefix = std::stoi(p);
  }
  Cidr c;
  if (inet_pton(AF_INET, ip.c_str(), c.addr) == 1) {
    c.family = AF_INET;
    if (prefix < 0) prefix = 32;
    if (prefix > 32) return false;
  } else if (inet_pton(AF_INET6, ip.c_str(), c.addr) == 1) {
    c.family = AF_INET6;
    if (prefix < 0) prefix = 128;
    if (prefix > 128) return false;
  } else {
    return false;
  }
  c.prefix = static_cast<uint8_t>(prefix);
  out = c;
  return true;
}

namespace {
const std::vector<Cidr>& private_ranges() {
  static const std::vector<Cidr> ranges = [] {
    std::vector<Cidr> v;
    for (const char* s :
         {"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
          "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",
          "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
          "64:ff9b:1::/48", "100::/64"}) {
      Cidr c;
      Cidr::parse(s, c);
      v.push_back(c);
    }
    return v;
  }();
  return ranges;
}

// ::ffff:a.b.c.d and the deprecated ::a.b.c.d reach IPv4 hosts: judge them as IPv4.
bool unwrap_mapped(const uint8_t* a6, uint8_t* a4) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t compat[12] = {};
  if (memcmp(a6, mapped, 12) == 0 || (memcmp(a6, compat, 12) == 0 && (a6[12] | a6[13]))) {
    memcpy(a4, a6 + 12, 4);
    return true;
  }
  return false;
}
}  // namespace

bool is_private_address(const uint8_t* addr, int family) {
  for (const Cidr& c : private_ranges())
    if (c.contains(addr, family)) return true;
  return false;
}

Acl::Acl(bool deny_private, const std::vector<std::string>& allow,
         const std::vector<std::string>& deny)
    : deny_private_(deny_private) {
  for (const auto& s : allow) {
    Cidr c;
    if (Cidr::parse(s, c)) allow_.push_back(c);
  }
  for (const auto& s : deny) {
    Cidr c;
    if (Cidr::parse(s, c)) deny_.push_back(c);
  }
}

bool Acl::address_allowed(const sockaddr* sa) const {
  uint8_t buf[16];
  const uint8_t* a;
  int family = sa->sa_family;
  if (family == AF_INET) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
  } else if (family == AF_INET6) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
    if (unwrap_mapped(a, buf)) {
      a = buf;
      family = AF_INET;
    }
  } else {
    return false;
  }
  for (const Cidr& c : deny_)
    if (c.contains(a, family)) return false;
  bool allowed_explicitly = false;
  for (const Cidr& c : allow_)
    if (c.contains(a, family)) allowed_explicitly = true;
  if (allowed_explicitly) return true;
  if (deny_private_ && is_private_address(a, family)) return false;
  // A non-empty allow list means only those targets (host-name entries are checked by name).
  return allow_.empty();
}

}  // namespace up
