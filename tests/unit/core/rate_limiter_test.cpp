#include "route/user_limits.h"

#include <doctest/doctest.h>

using up::RateLimiter;

namespace {
constexpr uint64_t ms = 1'000'000;  // ns
}

TEST_CASE("a fresh limiter allows one burst, then only what the rate refills") {
  RateLimiter r;
  const uint64_t bps = 8'000'000;  // 1 MB/s: the 100 ms burst is 100,000 bytes
  CHECK(r.allowance(1000 * ms, bps) == 100000);
  r.consume(1000 * ms, 100000, bps);
  CHECK(r.allowance(1000 * ms, bps) == 0);
  // 10 ms later 10,000 bytes have refilled: below the quantum (a quarter burst, 25,000), so
  // still nothing; at 25 ms the slice is worth moving.
  CHECK(r.allowance(1010 * ms, bps) == 0);
  CHECK(r.allowance(1025 * ms, bps) == 25000);
}

TEST_CASE("the quantum is at most 64 KiB on fast caps") {
  RateLimiter r;
  const uint64_t bps = 8'000'000'000;  // 1 GB/s: a quarter burst would be 25 MB
  r.consume(0, 100'000'000, bps);      // the whole burst used
  CHECK(r.allowance(0, bps) == 0);
  CHECK(r.allowance(ms / 20, bps) == 0);  // 50,000 bytes refilled: < 64 KiB
  CHECK(r.allowance(ms / 10, bps) == 100000);
}

TEST_CASE("over time the limiter holds the rate, whoever asks how often") {
  const uint64_t bps = 80'000'000;  // 10 MB/s
  for (uint64_t step : {uint64_t{100'000}, 1 * ms, 7 * ms, 100 * ms}) {
    RateLimiter r;
    uint64_t moved = 0;
    const uint64_t start = 5000 * ms;
    for (uint64_t t = start; t < start + 10'000 * ms; t += step) {
      uint64_t n = r.allowance(t, bps);
      n = std::min<uint64_t>(n, 1 << 20);  // a pipe's worth per call
      if (n) r.consume(t, n, bps);
      moved += n;
    }
    // 10 s at 10 MB/s plus at most one burst (1 MB).
    CAPTURE(step);
    CHECK(moved <= 101'000'000);
    CHECK(moved >= 95'000'000);
  }
}
