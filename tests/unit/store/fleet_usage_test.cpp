// store/fleet_usage.cpp: deltas are added once (a batch that did not go through is sent again
// as it was, with its number), the view adds what is not flushed yet to the fleet's totals, and the statement's
// parameters are PostgreSQL array literals.
#include "store/fleet_usage.h"

#include <doctest/doctest.h>

using up::FleetUsage;

TEST_CASE("FleetUsage: pending and in-flight bytes add to the totals read back") {
  FleetUsage f;
  f.add("bob", 100, 10);
  f.add("bob", 100, 5);
  f.add("bob", 100, 0);
  CHECK(f.used("bob", 100) == 15);
  auto batch = f.begin_flush({{"bob", 100}, {"carol", 100}}, 5000);
  CHECK(f.seq() == 5000);
  REQUIRE(batch.size() == 2);
  CHECK(batch[0].user == "bob");
  CHECK(batch[0].bytes == 15);
  CHECK(batch[1].user == "carol");
  CHECK(batch[1].bytes == 0);
  CHECK(f.flushing());
  CHECK(f.begin_flush({}, 6000).empty());  // one batch at a time
  f.add("bob", 100, 3);              // counted while the batch is in flight
  CHECK(f.used("bob", 100) == 18);
  // The fleet (this node's 15 and another's 100) as read back.
  f.committed({{"bob", 100, 115}, {"carol", 100, 7}});
  CHECK(!f.flushing());
  CHECK(f.used("bob", 100) == 118);
  CHECK(f.used("carol", 100) == 7);
  auto next = f.begin_flush({{"bob", 100}}, 4000);  // the clock went back: still above
  REQUIRE(next.size() == 1);
  CHECK(next[0].bytes == 3);
  CHECK(f.seq() == 5001);
}

TEST_CASE("FleetUsage: a batch that did not go through is sent again, same number") {
  FleetUsage f;
  f.add("bob", 100, 10);
  f.begin_flush({}, 1000);
  f.add("bob", 100, 1);
  f.failed();
  CHECK(f.used("bob", 100) == 11);  // still counted here meanwhile
  auto again = f.begin_flush({{"bob", 100}}, 2000);
  REQUIRE(again.size() == 1);
  CHECK(again[0].bytes == 10);  // as it was: the 1 waits for the next batch
  CHECK(f.seq() == 1000);
  f.committed({{"bob", 100, 10}});
  CHECK(f.used("bob", 100) == 11);
  auto next = f.begin_flush({}, 2000);
  REQUIRE(next.size() == 1);
  CHECK(next[0].bytes == 1);
  CHECK(f.seq() == 2000);
}

TEST_CASE("FleetUsage: periods are apart; reset forgets totals; prune drops users") {
  FleetUsage f;
  f.add("bob", 100, 10);
  f.begin_flush({}, 1);
  f.committed({{"bob", 100, 50}, {"ann", 100, 9}});
  f.add("bob", 200, 4);  // the next period
  CHECK(f.used("bob", 200) == 4);
  CHECK(f.used("bob", 100) == 50);
  f.reset("bob");
  CHECK(f.used("bob", 100) == 0);
  CHECK(f.used("bob", 200) == 4);  // counted here, not flushed yet: still added
  CHECK(f.used("ann", 100) == 9);
  f.prune([](const std::string& u) { return u != "bob"; });
  CHECK(f.used("bob", 200) == 0);
  CHECK(f.used("ann", 100) == 9);
  // A total the store no longer returns is zero.
  f.begin_flush({}, 2);
  f.committed({});
  CHECK(f.used("ann", 100) == 0);
}

TEST_CASE("usage_flush_params: node, three arrays in batch order, the number") {
  std::vector<FleetUsage::Row> batch{{"bob", 1720915200, 15}, {"we\"ird\\name,{x}", -5, 0}};
  auto p = up::usage_flush_params("edge-1", batch, 1733390000123);
  REQUIRE(p.size() == 5);
  CHECK(p[0] == "edge-1");
  CHECK(p[1] == "{\"bob\",\"we\\\"ird\\\\name,{x}\"}");
  CHECK(p[2] == "{1720915200,-5}");
  CHECK(p[3] == "{15,0}");
  CHECK(p[4] == "1733390000123");
  auto empty = up::usage_flush_params("n", {}, 1);
  CHECK(empty[1] == "{}");
  CHECK(empty[2] == "{}");
  CHECK(empty[3] == "{}");
}

TEST_CASE("parse_usage_totals: three columns of text, or nothing") {
  std::vector<FleetUsage::Row> out;
  REQUIRE(up::parse_usage_totals({{"bob", "100", "115"}, {"ann", "-3", "0"}}, out));
  REQUIRE(out.size() == 2);
  CHECK(out[0].user == "bob");
  CHECK(out[0].period_start == 100);
  CHECK(out[0].bytes == 115);
  CHECK(out[1].period_start == -3);
  CHECK(!up::parse_usage_totals({{"bob", "100"}}, out));
  CHECK(!up::parse_usage_totals({{"bob", "100", "12x"}}, out));
  CHECK(!up::parse_usage_totals({{"bob", "", "1"}}, out));
  CHECK(!up::parse_usage_totals({{"bob", "1", "-1"}}, out));
  CHECK(out.size() == 2);  // untouched on failure
}
