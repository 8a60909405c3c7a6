#include "config/crypt_hash.h"

#include <vector>

namespace up::config {

namespace {

bool is_b64(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '/';
}

bool all_b64(const std::string& s) {
  for (char c : s)
    if (!is_b64(c)) return false;
  return true;
}

// "$6$salt$hash" -> {"", "6", "salt", "hash"}
std::vector<std::string> split_dollar(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t d = s.find('$', start);
    parts.push_back(s.substr(start, d == std::string::npos ? std::string::npos : d - start));
    if (d == std::string::npos) break;
    start = d + 1;
  }
  return parts;
}

// $5$ and $6$: optional "rounds=N$", a salt of 1..16 characters, then the digest.
bool sha_crypt(const std::vector<std::string>& p, size_t digest_len) {
  size_t i = 2;
  if (p.size() == 5) {
    const std::string& r = p[2];
    if (r.rfind("rounds=", 0) != 0 || r.size() == 7 || r.size() > 16 ||
        r.find_first_not_of("0123456789", 7) != std::string::npos)
      return false;
    i = 3;
  } else if (p.size() != 4) {
    return false;
  }
  const std::string& salt = p[i];
  const std::string& digest = p[i + 1];
  if (salt.empty() || salt.size() > 16) return false;
  for (char c : salt)
    if (c == ':' || c == '\n' || c == ' ' || static_cast<unsigned char>(c) < 0x20) return false;
  return digest.size() == digest_len && all_b64(digest);
}

bool bcrypt(const std::vector<std::string>& p) {
  // $2b$12$ + 22 salt + 31 digest characters
  if (p.size() != 4) return false;
  const std::string& cost = p[2];
  if (cost.size() != 2 || cost[0] < '0' || cost[0] > '3' || cost[1] < '0' || cost[1] > '9')
    return false;
  int c = (cost[0] - '0') * 10 + (cost[1] - '0');
  if (c < 4 || c > 31) return false;
  return p[3].size() == 53 && all_b64(p[3]);
}

// $y$, $gy$ and $7$: "$id$params$salt$digest"; params and salt non-empty, digest of 43.
bool yescrypt_like(const std::vector<std::string>& p) {
  if (p.size() != 5) return false;
  return !p[2].empty() && all_b64(p[2]) && !p[3].empty() && all_b64(p[3]) && p[4].size() == 43 &&
         all_b64(p[4]);
}

bool scrypt(const std::vector<std::string>& p) {
  // "$7$" + 11 parameter characters and the salt in one field, then a 43-character digest.
  if (p.size() != 4) return false;
  return p[2].size() > 11 && all_b64(p[2].substr(0, 11)) && p[3].size() == 43 && all_b64(p[3]);
}

}  // namespace

bool is_crypt_hash(const std::string& s) {
  if (s.size() < 4 || s.size() > 512 || s[0] != '$') return false;
  std::vector<std::string> p = split_dollar(s);
  if (p.size() < 4) return false;
  const std::string& id = p[1];
  if (id == "6") return sha_crypt(p, 86);
  if (id == "5") return sha_crypt(p, 43);
  if (id == "2a" || id == "2b" || id == "2y") return bcrypt(p);
  if (id == "y" || id == "gy") return yescrypt_like(p);
  if (id == "7") return scrypt(p);
  return false;
}

}  // namespace up::config
