#include "core/timer_wheel.h"

#include <doctest/doctest.h>

#include <vector>

using up::TimerNode;
using up::TimerWheel;

TEST_CASE("timer wheel fires a node once its deadline passes, not before") {
  TimerWheel w(1000);
  TimerNode n;
  w.set_deadline(&n, 1500);
  std::vector<TimerNode*> fired;
  auto fire = [&](TimerNode* x) { fired.push_back(x); };
  w.advance(1400, fire);
  CHECK(fired.empty());
  w.advance(1600, fire);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0] == &n);
  CHECK_FALSE(n.linked);
}

TEST_CASE("a later deadline is a plain store; the node is re-filed lazily") {
  TimerWheel w(0);
  TimerNode n;
  w.set_deadline(&n, 100);
  w.set_deadline(&n, 5000);  // activity pushed it out
  int fired = 0;
  w.advance(200, [&](TimerNode*) { ++fired; });
  CHECK(fired == 0);
  CHECK(n.linked);  // re-filed for its real deadline
  w.advance(5100, [&](TimerNode*) { ++fired; });
  CHECK(fired == 1);
}

TEST_CASE("an earlier deadline re-files the node so it cannot fire late") {
  TimerWheel w(0);
  TimerNode n;
  w.set_deadline(&n, 10000);
  w.set_deadline(&n, 300);
  int fired = 0;
  w.advance(400, [&](TimerNode*) { ++fired; });
  CHECK(fired == 1);
}

TEST_CASE("deadlines beyond the wheel's span survive several laps") {
  TimerWheel w(0);
  TimerNode n;
  uint64_t far = TimerWheel::slot_ms * TimerWheel::slots * 3 + 77;
  w.set_deadline(&n, far);
  int fired = 0;
  for (uint64_t t = 0; t < far; t += 1000) w.advance(t, [&](TimerNode*) { ++fired; });
  CHECK(fired == 0);
  w.advance(far + TimerWheel::slot_ms, [&](TimerNode*) { ++fired; });
  CHECK(fired == 1);
}

TEST_CASE("disarm removes a node; fire may disarm nothing else and the list stays sound") {
  TimerWheel w(0);
  std::vector<TimerNode> nodes(100);
  for (size_t i = 0; i < nodes.size(); ++i) w.set_deadline(&nodes[i], 100 + i);
  w.disarm(&nodes[10]);
  nodes[10].deadline_ms = 0;
  size_t fired = 0;
  w.advance(1000, [&](TimerNode* n) {
    CHECK(n != &nodes[10]);
    ++fired;
  });
  CHECK(fired == 99);
}
