// route/quota.cpp: UTC period boundaries for day, week and month quotas, month lengths and
// leap years, and the calendar conversion they rest on.
#include "route/quota.h"

#include <doctest/doctest.h>

namespace {

using up::QuotaPeriod;

int64_t at(int64_t y, unsigned m, unsigned d, int64_t hh = 0, int64_t mm = 0, int64_t ss = 0) {
  return up::days_from_civil({y, m, d}) * 86400 + hh * 3600 + mm * 60 + ss;
}

}  // namespace

TEST_CASE("days_from_civil and civil_from_days agree with known dates") {
  CHECK(up::days_from_civil({1970, 1, 1}) == 0);
  CHECK(up::days_from_civil({2000, 3, 1}) == 11017);
  CHECK(at(2024, 2, 29) == 1709164800);  // date -u -d 2024-02-29 +%s
  CHECK(at(1969, 12, 31) == -86400);
  for (int64_t d = -800000; d < 800000; d += 997) {
    up::CivilDate c = up::civil_from_days(d);
    CHECK(up::days_from_civil(c) == d);
  }
}

TEST_CASE("day periods start at 00:00 UTC and last 86400 s") {
  int64_t t = at(2024, 7, 15, 13, 45, 12);
  CHECK(up::period_start(QuotaPeriod::day, t) == at(2024, 7, 15));
  CHECK(up::period_end(QuotaPeriod::day, at(2024, 7, 15)) == at(2024, 7, 16));
  CHECK(up::period_start(QuotaPeriod::day, at(2024, 7, 15)) == at(2024, 7, 15));  // boundary
  CHECK(up::period_start(QuotaPeriod::day, at(2024, 7, 15) - 1) == at(2024, 7, 14));
}

TEST_CASE("week periods start on Monday 00:00 UTC") {
  // 2024-07-15 is a Monday; 1970-01-01 was a Thursday.
  for (unsigned d = 15; d <= 21; ++d)
    CHECK(up::period_start(QuotaPeriod::week, at(2024, 7, d, 23, 59, 59)) == at(2024, 7, 15));
  CHECK(up::period_start(QuotaPeriod::week, at(2024, 7, 22)) == at(2024, 7, 22));
  CHECK(up::period_start(QuotaPeriod::week, at(2024, 7, 14, 23, 59, 59)) == at(2024, 7, 8));
  CHECK(up::period_start(QuotaPeriod::week, 0) == at(1969, 12, 29));
  // A week across a year end.
  CHECK(up::period_start(QuotaPeriod::week, at(2025, 1, 1, 12)) == at(2024, 12, 30));
  CHECK(up::period_end(QuotaPeriod::week, at(2024, 12, 30)) == at(2025, 1, 6));
}

TEST_CASE("month periods follow month lengths and leap years") {
  CHECK(up::period_start(QuotaPeriod::month, at(2024, 2, 29, 23, 59, 59)) == at(2024, 2, 1));
  CHECK(up::period_end(QuotaPeriod::month, at(2024, 2, 1)) == at(2024, 3, 1));  // 29 days
  CHECK(up::period_end(QuotaPeriod::month, at(2023, 2, 1)) - at(2023, 2, 1) == 28 * 86400);
  CHECK(up::period_end(QuotaPeriod::month, at(2024, 2, 1)) - at(2024, 2, 1) == 29 * 86400);
  CHECK(up::period_end(QuotaPeriod::month, at(2100, 2, 1)) - at(2100, 2, 1) == 28 * 86400);
  CHECK(up::period_end(QuotaPeriod::month, at(2000, 2, 1)) - at(2000, 2, 1) == 29 * 86400);
  CHECK(up::period_end(QuotaPeriod::month, at(2024, 4, 1)) == at(2024, 5, 1));  // 30 days
  CHECK(up::period_end(QuotaPeriod::month, at(2024, 12, 1)) == at(2025, 1, 1));
  CHECK(up::period_start(QuotaPeriod::month, at(2025, 1, 1)) == at(2025, 1, 1));
  CHECK(up::period_start(QuotaPeriod::month, at(2025, 1, 1) - 1) == at(2024, 12, 1));
  const unsigned lengths[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  for (unsigned m = 1; m <= 12; ++m)
    CHECK(up::period_end(QuotaPeriod::month, at(2023, m, 1)) - at(2023, m, 1) ==
          int64_t{lengths[m - 1]} * 86400);
}

TEST_CASE("utc_text writes ISO 8601 in UTC") {
  CHECK(up::utc_text(0) == "1970-01-01T00:00:00Z");
  CHECK(up::utc_text(at(2024, 2, 29, 7, 8, 9)) == "2024-02-29T07:08:09Z");
  CHECK(up::utc_text(-1) == "1969-12-31T23:59:59Z");
}
