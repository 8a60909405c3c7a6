#include "auth/credential_cache.h"

#include <doctest/doctest.h>

#include "auth/password_verifier.h"

#include <chrono>
#include <condition_variable>
#include <mutex>

using up::CredentialCache;

TEST_CASE("a cached credential matches only the same user, password and stored hash") {
  CredentialCache cache;
  auto d = CredentialCache::digest("alice", "secret", "$6$salt$hash");
  cache.insert("alice", d);
  CHECK(cache.contains("alice", CredentialCache::digest("alice", "secret", "$6$salt$hash")));
  CHECK_FALSE(cache.contains("alice", CredentialCache::digest("alice", "wrong", "$6$salt$hash")));
  // A changed password (new stored hash) misses by itself.
  CHECK_FALSE(cache.contains("alice", CredentialCache::digest("alice", "secret", "$6$new$hash")));
  CHECK_FALSE(cache.contains("bob", d));
  // Field boundaries matter: ("ab","c") is not ("a","bc").
  CHECK(CredentialCache::digest("ab", "c", "h") != CredentialCache::digest("a", "bc", "h"));
}

TEST_CASE("the cache stays bounded") {
  CredentialCache cache(10);
  for (int i = 0; i < 25; ++i)
    cache.insert("user" + std::to_string(i), CredentialCache::digest("u", "p", "h"));
  CHECK(cache.size() <= 10);
}

TEST_CASE("crypt(3) verification: sha512-crypt, refusal of wrong and malformed hashes") {
  // openssl passwd -6 -salt saltsalt secret
  const std::string h =
      "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq."
      "H91p5hVO1";
  CHECK(up::PasswordVerifier::check("secret", h));
  CHECK_FALSE(up::PasswordVerifier::check("Secret", h));
  CHECK_FALSE(up::PasswordVerifier::check("secret", ""));
  CHECK_FALSE(up::PasswordVerifier::check("secret", "plaintext"));
  CHECK_FALSE(up::PasswordVerifier::check("secret", "$6$"));
  // crypt(3) stops at a NUL; the verifier must not let the rest be ignored.
  CHECK_FALSE(up::PasswordVerifier::check(std::string("secret\0zzz", 10), h));
}

TEST_CASE("the verifier answers asynchronously, and unknown users cost a full check too") {
  up::PasswordVerifier v(1);
  const std::string h =
      "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq."
      "H91p5hVO1";
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  bool results[3] = {};
  auto done = [&](int i) {
    return [&, i](bool ok) {
      std::lock_guard lock(mu);
      results[i] = ok;
      ++answered;
      cv.notify_all();
    };
  };
  v.submit("secret", h, done(0));
  v.submit("wrong", h, done(1));
  v.submit("secret", "", done(2));  // unknown user: dummy hash, always false
  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return answered == 3; }));
  CHECK(results[0]);
  CHECK_FALSE(results[1]);
  CHECK_FALSE(results[2]);
}
