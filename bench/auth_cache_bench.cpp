// What a repeat connection pays to authenticate: a keyed-hash lookup in the worker's cache,
// against a full crypt(3) verification (the cost the cache saves).
#include <benchmark/benchmark.h>

#include "auth/credential_cache.h"
#include "auth/password_verifier.h"

namespace {

const std::string sha512_hash =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq."
    "H91p5hVO1";

void BM_CacheHit(benchmark::State& state) {
  up::CredentialCache cache;
  for (int i = 0; i < 10000; ++i)
    cache.insert("user" + std::to_string(i),
                 up::CredentialCache::digest("user", "pw", sha512_hash));
  cache.insert("alice", up::CredentialCache::digest("alice", "secret", sha512_hash));
  for (auto _ : state) {
    auto d = up::CredentialCache::digest("alice", "secret", sha512_hash);
    benchmark::DoNotOptimize(cache.contains("alice", d));
  }
}
BENCHMARK(BM_CacheHit);

void BM_CryptSha512(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(up::PasswordVerifier::check("secret", sha512_hash));
}
BENCHMARK(BM_CryptSha512)->Unit(benchmark::kMicrosecond);

void BM_CryptYescrypt(benchmark::State& state) {
  // mkpasswd -m yescrypt -S '$y$j9T$saltsaltsaltsalt' secret (default cost)
  static const std::string h = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0";
  for (auto _ : state) benchmark::DoNotOptimize(up::PasswordVerifier::check("secret", h));
}
BENCHMARK(BM_CryptYescrypt)->Unit(benchmark::kMillisecond);

}  // namespace
