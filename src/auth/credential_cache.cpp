#include "auth/credential_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
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

// One HMAC-SHA256 context per thread, keyed once: re-initialising it with the same key skips
// the algorithm fetch and key schedule that a one-shot HMAC() pays on every call (about 1 us,
// on every login that hits the cache).
struct KeyedMac {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  KeyedMac() {
    mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (!ctx || EVP_MAC_init(ctx, process_key(), 32, params) != 1) abort();
  }
  ~KeyedMac() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};
}  // namespace

CredentialDigest CredentialCache::digest(std::string_view user, std::string_view password,
                                         std::string_view stored_hash) {
  thread_local KeyedMac hmac;
  // Length-prefixed fields so ("ab","c") and ("a","bc") cannot collide.
  if (EVP_MAC_init(hmac.ctx, nullptr, 0, nullptr) != 1) abort();  // same key, fresh state
  for (std::string_view part : {user, password, stored_hash}) {
    uint32_t n = static_cast<uint32_t>(part.size());
    EVP_MAC_update(hmac.ctx, reinterpret_cast<const uint8_t*>(&n), sizeof n);
    EVP_MAC_update(hmac.ctx, reinterpret_cast<const uint8_t*>(part.data()), part.size());
  }
  CredentialDigest out{};
  size_t len = 0;
  if (EVP_MAC_final(hmac.ctx, out.data(), &len, out.size()) != 1 || len != out.size()) abort();
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
