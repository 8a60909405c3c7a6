// control/usage_store.cpp: periods roll over to zero, and the usage file round-trips.
#include "control/usage_store.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "route/quota.h"

namespace {
int64_t at(int64_t y, unsigned m, unsigned d, int64_t hh = 0) {
  return up::days_from_civil({y, m, d}) * 86400 + hh * 3600;
}
}  // namespace

TEST_CASE("UsageBook: usage counts within a period and restarts at the next") {
  up::UsageBook b;
  b.current("alice", up::QuotaPeriod::day, at(2024, 7, 15, 10)).used_bytes += 100;
  b.current("alice", up::QuotaPeriod::day, at(2024, 7, 15, 23)).used_bytes += 50;
  CHECK(b.find("alice")->used_bytes == 150);
  CHECK(b.current("alice", up::QuotaPeriod::day, at(2024, 7, 16, 0)).used_bytes == 0);
  CHECK(b.find("alice")->period_start == at(2024, 7, 16));
  // Another kind of period starts over too.
  b.current("alice", up::QuotaPeriod::day, at(2024, 7, 16, 1)).used_bytes = 7;
  CHECK(b.current("alice", up::QuotaPeriod::month, at(2024, 7, 16, 1)).used_bytes == 0);
  b.reset("alice");
  CHECK(b.find("alice") == nullptr);
}

TEST_CASE("UsageBook: the file round-trips and bad files are refused") {
  up::UsageBook b;
  b.current("alice", up::QuotaPeriod::month, at(2024, 2, 29, 5)).used_bytes = 123456789012ull;
  b.current("bob \"q\"", up::QuotaPeriod::week, at(2024, 2, 29, 5)).used_bytes = 1;
  char tmpl[] = "/tmp/uringproxy-usage-test-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string path = up::usage_file_for(std::string(tmpl) + "/users.json");
  CHECK(path == std::string(tmpl) + "/usage.json");
  std::string err;
  up::UsageBook missing;
  CHECK(up::load_usage(path, missing, err));  // no file yet: nothing used
  CHECK(missing.entries().empty());
  REQUIRE(up::save_usage(path, b, err));
  up::UsageBook back;
  REQUIRE(up::load_usage(path, back, err));
  REQUIRE(back.entries().size() == 2);
  const up::UsageEntry* a = back.find("alice");
  REQUIRE(a != nullptr);
  CHECK(a->used_bytes == 123456789012ull);
  CHECK(a->period == up::QuotaPeriod::month);
  CHECK(a->period_start == at(2024, 2, 1));
  CHECK(back.find("bob \"q\"")->period_start == at(2024, 2, 26));

  std::ofstream(path) << "{\"usage\": [{\"user\": \"x\", \"period\": \"year\", "
                         "\"period_start\": 0, \"used_bytes\": 1}]}";
  up::UsageBook bad;
  CHECK_FALSE(up::load_usage(path, bad, err));
  CHECK(err.find("usage.json: usage[0]") != std::string::npos);
  CHECK(err.find("delete it") != std::string::npos);
  unlink(path.c_str());
  rmdir(tmpl);
}
