#include "auth/credential_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>

namespace up {

namespace {
const uint8_t* process_key() {
  static uint8_t key[32];
  static bool ready = [] {
    if (RAND_bytes(key, sizeof key) != 1) abort();
    return true;
  }();
  (void)ready;
  return key;
}
}  // namespace

CredentialDigest CredentialCache::digest(std::string_view user, std::string_view password,
                                         std::string_view stored_hash) {
  // Length-prefixed fields so ("ab","c") and ("a","bc") cannot collide.
  std::string msg;
  msg.reserve(user.size() + password.size() + stored_hash.size() + 12);
  for (std::string_view part : {user, password, stored_hash}) {
    uint32_t n = static_cast<uint32_t>(part.size());
    msg.append(reinterpret_cast<const char*>(&n), sizeof n);
    msg.append(part);
  }
  CredentialDigest out{};
  unsigned len = 0;
  HMAC(EVP_sha256(), process_key(), 32, reinterpret_cast<const uint8_t*>(msg.data()), msg.size(),
       out.data(), &len);
  OPENSSL_cleanse(msg.data(), msg.size());
  return out;
}

bool CredentialCache::contains(std::string_view user, const CredentialDigest& d) const {
  auto it = entries_.find(std::string(user));
  return it != entries_.end() && CRYPTO_memcmp(it->second.data(), d.data(), d.size()) == 0;
}

void CredentialCache::insert(std::string_view user, const CredentialDigest& d) {
  if (entries_.size() >= max_entries_) entries_.clear();  // crude but bounded
  entries_[std::string(user)] = d;
}

}  // namespace up
