#include "route/acl.h"

#include <arpa/inet.h>
#include <string.h>

#include <ctype.h>

#include <algorithm>
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

// NAT64 (64:ff9b::/96, RFC 6052) and 6to4 (2002::/16, RFC 3056) addresses are delivered to
// the IPv4 address they carry: 64:ff9b::7f00:1 is 127.0.0.1 behind a local NAT64.
bool embedded_ipv4(const uint8_t* a6, uint8_t* a4) {
  static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
  if (memcmp(a6, nat64, 12) == 0) {
    memcpy(a4, a6 + 12, 4);
    return true;
  }
  if (a6[0] == 0x20 && a6[1] == 0x02) {
    memcpy(a4, a6 + 2, 4);
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

CidrSet::Key CidrSet::mask(const uint8_t* a, int bytes, uint8_t prefix) {
  Key k{};
  int full = prefix / 8, rest = prefix % 8;
  memcpy(k.data(), a, std::min(full, bytes));
  if (rest && full < bytes) k[full] = static_cast<uint8_t>(a[full] & (0xff << (8 - rest)));
  return k;
}

size_t CidrSet::KeyHash::operator()(const Key& k) const {
  uint64_t x, y;
  memcpy(&x, k.data(), 8);
  memcpy(&y, k.data() + 8, 8);
  return std::hash<uint64_t>{}(x * 0x9E3779B97F4A7C15ull ^ (y + 0x632BE59BD9B4E019ull));
}

void CidrSet::add(const Cidr& c) {
  auto& groups = c.family == AF_INET ? v4_ : v6_;
  auto it = std::find_if(groups.begin(), groups.end(),
                         [&](const ByPrefix& g) { return g.prefix == c.prefix; });
  if (it == groups.end()) {
    groups.push_back(ByPrefix{c.prefix, {}});
    std::sort(groups.begin(), groups.end(),
              [](const ByPrefix& a, const ByPrefix& b) { return a.prefix > b.prefix; });
    it = std::find_if(groups.begin(), groups.end(),
                      [&](const ByPrefix& g) { return g.prefix == c.prefix; });
  }
  it->masked.insert(mask(c.addr, c.family == AF_INET ? 4 : 16, c.prefix));
}

bool CidrSet::contains(const uint8_t* a, int family) const {
  const auto& groups = family == AF_INET ? v4_ : v6_;
  int bytes = family == AF_INET ? 4 : 16;
  for (const ByPrefix& g : groups)
    if (g.masked.count(mask(a, bytes, g.prefix))) return true;
  return false;
}

void AclList::add(const std::string& entry) {
  Cidr c;
  if (Cidr::parse(entry, c)) {
    cidrs.add(c);
    return;
  }
  std::string e;
  for (char ch : entry) e += static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  if (e.rfind("*.", 0) == 0)
    suffixes.insert(e.substr(1));  // keeps the dot: ".example.com"
  else
    hosts.insert(e);
}

bool AclList::matches_name(std::string_view host) const {
  if (hosts.empty() && suffixes.empty()) return false;
  std::string h;
  for (char ch : host) h += static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  if (!h.empty() && h.back() == '.') h.pop_back();  // "example.com." is example.com
  if (hosts.count(h)) return true;
  // "a.b.example.com" is under "*.b.example.com" and "*.example.com" and "*.com".
  for (size_t dot = h.find('.'); dot != std::string::npos; dot = h.find('.', dot + 1))
    if (suffixes.count(h.substr(dot))) return true;
  return false;
}

bool AclList::matches_address(const uint8_t* a, int family) const {
  return cidrs.contains(a, family);
}

Acl::Acl(bool deny_private, const std::vector<std::string>& allow,
         const std::vector<std::string>& deny, const std::vector<uint16_t>& deny_ports)
    : deny_private_(deny_private), deny_ports_(deny_ports) {
  for (const auto& s : allow) allow_.add(s);
  for (const auto& s : deny) deny_.add(s);
}

namespace {
// The address bytes and family to judge: IPv4-mapped IPv6 becomes IPv4.
int view(const sockaddr* sa, uint8_t* buf, const uint8_t*& a) {
  if (sa->sa_family == AF_INET) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
    return AF_INET;
  }
  if (sa->sa_family == AF_INET6) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
    if (unwrap_mapped(a, buf)) {
      a = buf;
      return AF_INET;
    }
    return AF_INET6;
  }
  return 0;
}
}  // namespace

Acl::Verdict Acl::check_target(const Target& t, const UserAcl* user) const {
  for (uint16_t p : deny_ports_)
    if (p == t.port) return Verdict::deny;
  if (t.kind == Target::Kind::domain) {
    if (deny_.matches_name(t.host) || (user && user->deny.matches_name(t.host)))
      return Verdict::deny;
    if (allow_.matches_name(t.host) || (user && user->allow.matches_name(t.host)))
      return Verdict::allow;  // still subject to the address stage's denies and private ranges
    return Verdict::check_addresses;
  }
  sockaddr_storage ss;
  t.to_sockaddr(ss);
  return address_allowed(reinterpret_cast<sockaddr*>(&ss), user, false) ? Verdict::allow
                                                                          : Verdict::deny;
}

bool Acl::address_allowed(const sockaddr* sa, const UserAcl* user, bool name_allowed) const {
  uint8_t buf[16];
  const uint8_t* a = nullptr;
  int family = view(sa, buf, a);
  if (!family) return false;
  auto denied = [&](const uint8_t* x, int f) {
    return deny_.matches_address(x, f) || (user && user->deny.matches_address(x, f));
  };
  auto allowed = [&](const uint8_t* x, int f) {
    return allow_.matches_address(x, f) || (user && user->allow.matches_address(x, f));
  };
  // A NAT64 or 6to4 address is judged as the IPv4 address it carries as well as itself: a deny
  // of either form refuses it, and only an allow of the IPv4 address opens a private one (an
  // allow of ::/0 must not open 127.0.0.1 through 64:ff9b::7f00:1).
  uint8_t v4[4];
  bool embedded = family == AF_INET6 && embedded_ipv4(a, v4);
  if (denied(a, family) || (embedded && denied(v4, AF_INET))) return false;
  if (embedded) {
    if (allowed(v4, AF_INET)) return true;
    if (deny_private_ && is_private_address(v4, AF_INET)) return false;
  }
  if (allowed(a, family)) return true;
  if (deny_private_ && is_private_address(a, family)) return false;
  return name_allowed || !has_allow(user);
}

}  // namespace up
