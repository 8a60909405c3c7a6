#include "auth/auth_guard.h"

#include <doctest/doctest.h>

using up::AuthGuard;
using up::AuthPolicy;
using up::FailureVerdict;

namespace {
AuthGuard::Address addr(uint8_t last) {
  AuthGuard::Address a{};
  a[10] = a[11] = 0xff;
  a[12] = 127;
  a[15] = last;
  return a;
}
}  // namespace

TEST_CASE("failures are answered at once up to half the limit, then later and later, then blocked") {
  AuthGuard g;
  AuthPolicy p{10, 60000, 300000, 100};
  const auto a = addr(1);
  for (int i = 1; i <= 5; ++i) {
    FailureVerdict v = g.record_failure(a, 1000, p);
    CHECK_FALSE(v.blocked_now);
    CHECK(v.delay_ms == 0);
  }
  for (int i = 6; i <= 9; ++i) {
    FailureVerdict v = g.record_failure(a, 1000, p);
    CHECK_FALSE(v.blocked_now);
    CHECK(v.delay_ms == uint64_t(i - 5) * 100);
  }
  CHECK_FALSE(g.blocked(a, 1000));
  FailureVerdict v = g.record_failure(a, 1000, p);
  CHECK(v.blocked_now);
  CHECK(v.delay_ms == 0);  // refused from now on: nothing left to slow down
  CHECK(g.blocked(a, 1000));
  CHECK(g.blocked(a, 300999));
  CHECK_FALSE(g.blocked(a, 301000));
  // Another address is not touched.
  CHECK_FALSE(g.blocked(addr(2), 1000));
  CHECK(g.record_failure(addr(2), 1000, p).delay_ms == 0);
}

TEST_CASE("the slow-down is capped and resets with the window") {
  AuthGuard g;
  AuthPolicy p{1000, 60000, 300000, 500};
  const auto a = addr(3);
  uint64_t last = 0;
  for (int i = 0; i < 600; ++i) last = g.record_failure(a, 0, p).delay_ms;
  CHECK(last == AuthGuard::max_delay_ms);
  // A new window starts from zero.
  CHECK(g.record_failure(a, 60001, p).delay_ms == 0);
}

TEST_CASE("block_after 0 turns both off") {
  AuthGuard g;
  AuthPolicy p{0, 60000, 300000, 100};
  for (int i = 0; i < 1000; ++i) {
    FailureVerdict v = g.record_failure(addr(4), 0, p);
    REQUIRE_FALSE(v.blocked_now);
    REQUIRE(v.delay_ms == 0);
  }
  CHECK_FALSE(g.blocked(addr(4), 0));
}
