#pragma once
// Which targets a user may reach (docs/configuration.md). Entries are CIDRs, exact host names or
// "*.suffix"; per-user lists add to the global ones. Two stages:
//   - the target as the client named it (deny_ports, host and suffix entries, and for literal
//     addresses everything), before any resolution;
//   - each resolved address (direct routes), so a name that resolves to a private address is
//     refused too (DNS rebinding). IPv4-mapped IPv6 is judged as the IPv4 address it maps;
//     NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses also by the IPv4 address they carry.
// An explicit deny always wins; a non-empty allow means only those targets; an allow CIDR
// opens the private ranges it covers (a host entry does not: names can be re-pointed).
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "uringproxy/target.h"

namespace up {

struct Cidr {
  uint8_t family = 0;  // AF_INET or AF_INET6
  uint8_t prefix = 0;
  uint8_t addr[16] = {};
  bool contains(const uint8_t* a, int family) const;
  static bool parse(const std::string& text, Cidr& out);
};

// CIDRs grouped by prefix length, each group a hash set of masked addresses: a lookup costs
// one hash probe per distinct prefix length, however long the list (10,000 entries cost what
// ten do).
class CidrSet {
 public:
  void add(const Cidr& c);
  bool contains(const uint8_t* a, int family) const;
  bool empty() const { return v4_.empty() && v6_.empty(); }

 private:
  using Key = std::array<uint8_t, 16>;
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct ByPrefix {
    uint8_t prefix;
    std::unordered_set<Key, KeyHash> masked;
  };
  static Key mask(const uint8_t* a, int bytes, uint8_t prefix);
  std::vector<ByPrefix> v4_;  // longest prefix first
  std::vector<ByPrefix> v6_;
};

// One list of entries (allow or deny), parsed.
struct AclList {
  CidrSet cidrs;
  std::unordered_set<std::string> hosts;     // lower-case
  std::unordered_set<std::string> suffixes;  // ".example.com" for "*.example.com"
  bool empty() const { return cidrs.empty() && hosts.empty() && suffixes.empty(); }
  void add(const std::string& entry);
  bool matches_name(std::string_view host) const;
  bool matches_address(const uint8_t* a, int family) const;
};

struct UserAcl {
  AclList allow;
  AclList deny;
};

class Acl {
 public:
  enum class Verdict : uint8_t { deny, allow, check_addresses };

  Acl() = default;
  Acl(bool deny_private, const std::vector<std::string>& allow,
      const std::vector<std::string>& deny, const std::vector<uint16_t>& deny_ports);

  // Stage 1: the target as given. `user` may be null.
  Verdict check_target(const Target& t, const UserAcl* user) const;
  // Stage 2: one resolved address. `name_allowed`: stage 1 matched an allow host/suffix.
  bool address_allowed(const sockaddr* sa, const UserAcl* user, bool name_allowed) const;
  // Stage 2 without a user, for tests and callers that only care about the global lists.
  bool address_allowed(const sockaddr* sa) const { return address_allowed(sa, nullptr, false); }
  bool has_allow(const UserAcl* user) const {
    return !allow_.empty() || (user && !user->allow.empty());
  }

 private:
  bool deny_private_ = true;
  AclList allow_;
  AclList deny_;
  std::vector<uint16_t> deny_ports_;
};

// True for loopback, RFC 1918, link-local, CGNAT, unique-local, multicast, unspecified,
// broadcast, and the other special-use ranges a user must never reach on the proxy host.
bool is_private_address(const uint8_t* addr, int family);

}  // namespace up
