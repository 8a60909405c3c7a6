// src/agent/link_planner.cpp: when agent mode dials its control link and tops up its reverse
// links — backoff bounds and growth, jitter, "reconnect everything" after a lost session, and
// the pool kept at idle_connections.
#include "agent/link_planner.h"

#include <doctest/doctest.h>

#include <set>

using namespace up;

namespace {
LinkObservation control(LinkObservation::Control c, int idle = 0, int opening = 0,
                        uint32_t failures = 0) {
  LinkObservation o;
  o.control = c;
  o.idle = idle;
  o.opening = opening;
  o.failures = failures;
  return o;
}
constexpr auto down = LinkObservation::down;
constexpr auto connecting = LinkObservation::connecting;
constexpr auto up_ = LinkObservation::up;

// The first time >= from at which a turn with `seen` dials the control link (10 ms steps).
uint64_t next_dial(LinkPlanner& p, uint64_t from, const LinkObservation& seen) {
  for (uint64_t t = from; t < from + 120000; t += 10)
    if (p.turn(t, seen).dial_control) return t;
  FAIL("no dial within two minutes");
  return 0;
}
}  // namespace

TEST_CASE("link planner: backoff stays within [d/2, d], doubles, and is capped at 30 s") {
  LinkPlanner p(4, 1);
  for (uint32_t step = 0; step < 40; ++step) {
    uint64_t d = std::min<uint64_t>(LinkPlanner::cap_ms, LinkPlanner::base_ms << std::min(step, 10u));
    for (int i = 0; i < 50; ++i) {
      uint64_t b = p.backoff(step);
      CHECK(b >= d / 2);
      CHECK(b <= d);
    }
  }
}

TEST_CASE("link planner: jitter spreads a fleet that lost its gateway at the same moment") {
  std::set<uint64_t> delays;
  for (uint64_t seed = 0; seed < 50; ++seed) delays.insert(LinkPlanner(4, seed).backoff(5));
  CHECK(delays.size() > 40);  // 50 agents, [8 s, 16 s]: hardly two alike
}

TEST_CASE("link planner: the first control dial is at once; failed dials back off more and more") {
  LinkPlanner p(4, 7);
  LinkActions a = p.turn(0, control(down));
  CHECK(a.dial_control);
  CHECK_FALSE(a.reconnect_everything);
  CHECK(a.open_reverse == 0);
  CHECK_FALSE(p.turn(10, control(connecting)).dial_control);  // dialling: wait for it
  // The dial failed (the link reports down): the next one waits 0.5-1 s, then 1-2 s, 2-4 s...
  uint64_t t = 20, prev_gap = 0;
  for (uint32_t step = 1; step <= 7; ++step) {
    uint64_t at = next_dial(p, t, control(down));
    uint64_t gap = at - t;
    uint64_t d = std::min<uint64_t>(LinkPlanner::cap_ms, LinkPlanner::base_ms << step);
    CHECK(gap + 10 >= d / 2);
    CHECK(gap <= d + 10);
    if (step >= 3) CHECK(gap > prev_gap / 2);  // grows (allowing for the jitter)
    prev_gap = gap;
    t = at + 10;
  }
}

TEST_CASE("link planner: a name that does not resolve backs off like a failed dial") {
  LinkPlanner p(4, 3);
  REQUIRE(p.turn(0, control(down)).dial_control);
  p.dial_failed(0);
  CHECK_FALSE(p.turn(200, control(down)).dial_control);  // at least 0.5 s (step 1)
  uint64_t at = next_dial(p, 200, control(down));
  CHECK(at >= 500);
  CHECK(at <= 1010);
}

TEST_CASE("link planner: once up, the pool is topped up to idle_connections and no further") {
  LinkPlanner p(4, 11);
  REQUIRE(p.turn(0, control(down)).dial_control);
  CHECK(p.turn(5, control(up_)).open_reverse == 4);
  CHECK(p.turn(6, control(up_, 0, 4)).open_reverse == 0);   // all four opening
  CHECK(p.turn(7, control(up_, 3, 1)).open_reverse == 0);
  CHECK(p.turn(8, control(up_, 4, 0)).open_reverse == 0);
  CHECK(p.turn(9, control(up_, 2, 0)).open_reverse == 2);   // two tunnels took two links
  CHECK(p.turn(10, control(up_, 6, 0)).open_reverse == 0);  // more than the target: none
  CHECK_FALSE(p.turn(11, control(up_, 4, 0)).dial_control);
}

TEST_CASE("link planner: reverse links that fail before authenticating back off the top-up") {
  LinkPlanner p(2, 5);
  REQUIRE(p.turn(0, control(down)).dial_control);
  CHECK(p.turn(1, control(up_)).open_reverse == 2);
  // Both failed: no new ones for 0.5-1 s.
  CHECK(p.turn(2, control(up_, 0, 0, 2)).open_reverse == 0);
  CHECK(p.turn(400, control(up_, 0, 0, 2)).open_reverse == 0);
  CHECK(p.turn(1100, control(up_, 0, 0, 2)).open_reverse == 2);
  // Failing again: 1-2 s.
  CHECK(p.turn(1101, control(up_, 0, 0, 4)).open_reverse == 0);
  CHECK(p.turn(1900, control(up_, 0, 0, 4)).open_reverse == 0);
  CHECK(p.turn(3200, control(up_, 0, 0, 4)).open_reverse == 2);
  // The pool full once: the next failure starts from 0.5-1 s again.
  CHECK(p.turn(3300, control(up_, 2, 0, 4)).open_reverse == 0);
  CHECK(p.turn(3301, control(up_, 1, 0, 5)).open_reverse == 0);
  CHECK(p.turn(4400, control(up_, 1, 0, 5)).open_reverse == 1);
}

TEST_CASE("link planner: a lost control link reconnects everything, once, then redials soon") {
  LinkPlanner p(4, 9);
  REQUIRE(p.turn(0, control(down)).dial_control);
  for (int i = 0; i < 5; ++i) p.dial_failed(i);  // a long outage grew the backoff...
  uint64_t at = next_dial(p, 10, control(down));
  CHECK(p.turn(at + 1, control(up_)).open_reverse == 4);  // ...then the gateway came up
  LinkActions lost = p.turn(at + 100, control(down, 4, 0));
  CHECK(lost.reconnect_everything);
  CHECK_FALSE(lost.dial_control);  // not at once: a restarted gateway gets 0.25-0.5 s
  CHECK(lost.open_reverse == 0);
  CHECK_FALSE(p.turn(at + 101, control(down)).reconnect_everything);  // said once
  uint64_t again = next_dial(p, at + 101, control(down));
  CHECK(again - (at + 100) >= 250);
  CHECK(again - (at + 100) <= 510);  // the backoff started over
}

TEST_CASE("link planner: nothing is opened while the control link is connecting") {
  LinkPlanner p(4, 2);
  REQUIRE(p.turn(0, control(down)).dial_control);
  LinkActions a = p.turn(50, control(connecting, 0, 0, 9));
  CHECK_FALSE(a.dial_control);
  CHECK_FALSE(a.reconnect_everything);
  CHECK(a.open_reverse == 0);
}
