#pragma once
// Verified credentials, so a repeat connection costs a keyed hash instead of a crypt(3) run.
// Keyed by HMAC-SHA256(process-random key, user, password, stored hash): the plain password is
// never kept, and a changed hash (new password) misses by itself. One cache per worker: no
// locks, and a miss on one worker costs one extra verification at most.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace up {

using CredentialDigest = std::array<uint8_t, 32>;

class CredentialCache {
 public:
  explicit CredentialCache(size_t max_entries = 100000) : max_entries_(max_entries) {}

  static CredentialDigest digest(std::string_view user, std::string_view password,
                                 std::string_view stored_hash);

  bool contains(std::string_view user, const CredentialDigest& d) const;
  void insert(std::string_view user, const CredentialDigest& d);
  void erase(std::string_view user) { entries_.erase(std::string(user)); }
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }

 private:
  std::unordered_map<std::string, CredentialDigest> entries_;
  size_t max_entries_;
};

}  // namespace up
