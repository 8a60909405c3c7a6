#pragma once
// Quota periods as UTC calendar arithmetic: a day starts at 00:00 UTC, a week on Monday
// 00:00 UTC, a month on the 1st at 00:00 UTC (docs/configuration.md#usersjson). Pure: times are
// Unix seconds, no time zone or clock is consulted.
#include <cstdint>
#include <string>

#include "uringproxy/config.h"

namespace up {

struct CivilDate {
  int64_t year;
  unsigned month;  // 1-12
  unsigned day;    // 1-31
};

// Days since 1970-01-01 of a proleptic Gregorian date, and back.
int64_t days_from_civil(const CivilDate& d);
CivilDate civil_from_days(int64_t days);

// The start of the period that contains `unix_s` (a boundary at or before it); for
// QuotaPeriod::none, 0 (one period that never ends).
int64_t period_start(QuotaPeriod p, int64_t unix_s);
// The start of the period after the one starting at `start` (INT64_MAX for none).
int64_t period_end(QuotaPeriod p, int64_t start);

// "2024-02-29T00:00:00Z".
std::string utc_text(int64_t unix_s);

}  // namespace up
