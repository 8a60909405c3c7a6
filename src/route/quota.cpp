#include "route/quota.h"

#include <cstdio>

namespace up {

namespace {
constexpr int64_t kDay = 86400;

int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }
}  // namespace

// Howard Hinnant's days_from_civil / civil_from_days (eras of 400 years, March-based years so
// the leap day falls at the end of one).
int64_t days_from_civil(const CivilDate& d) {
  int64_t y = d.year - (d.month <= 2);
  int64_t era = floor_div(y, 400);
  int64_t yoe = y - era * 400;
  int64_t mp = (d.month + 9) % 12;  // March = 0
  int64_t doy = (153 * mp + 2) / 5 + d.day - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

CivilDate civil_from_days(int64_t days) {
  int64_t z = days + 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  unsigned day = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
  unsigned month = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (month <= 2), month, day};
}

int64_t period_start(QuotaPeriod p, int64_t unix_s) {
  int64_t days = floor_div(unix_s, kDay);
  switch (p) {
    case QuotaPeriod::none: return 0;
    case QuotaPeriod::day: return days * kDay;
    case QuotaPeriod::week: {
      int64_t monday = days - (days + 3 - floor_div(days + 3, 7) * 7);  // 1970-01-01: Thursday
      return monday * kDay;
    }
    case QuotaPeriod::month: {
      CivilDate d = civil_from_days(days);
      return days_from_civil({d.year, d.month, 1}) * kDay;
    }
  }
  return 0;
}

int64_t period_end(QuotaPeriod p, int64_t start) {
  switch (p) {
    case QuotaPeriod::none: return INT64_MAX;
    case QuotaPeriod::day: return start + kDay;
    case QuotaPeriod::week: return start + 7 * kDay;
    case QuotaPeriod::month: {
      CivilDate d = civil_from_days(floor_div(start, kDay));
      CivilDate next = d.month == 12 ? CivilDate{d.year + 1, 1, 1} : CivilDate{d.year, d.month + 1, 1};
      return days_from_civil(next) * kDay;
    }
  }
  return INT64_MAX;
}

std::string utc_text(int64_t unix_s) {
  int64_t days = floor_div(unix_s, kDay);
  int64_t secs = unix_s - days * kDay;
  CivilDate d = civil_from_days(days);
  char buf[48];
  snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ",
           static_cast<long long>(d.year), d.month, d.day, static_cast<long long>(secs / 3600),
           static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
  return buf;
}

}  // namespace up
