// store/store_change.cpp: a NOTIFY payload names one user, the upstreams, the agents or a quota
// reset; anything else is a full read.
#include "store/store_change.h"

#include <doctest/doctest.h>

using up::parse_store_change;
using Kind = up::StoreChange::Kind;

TEST_CASE("store change: one user, the upstreams, a quota reset") {
  auto c = parse_store_change("node-a user bob");
  CHECK(c.kind == Kind::user);
  CHECK(c.user == "bob");
  c = parse_store_change("node-a upstreams");
  CHECK(c.kind == Kind::upstreams);
  CHECK(c.user.empty());
  c = parse_store_change("node-a agents");
  CHECK(c.kind == Kind::agents);
  CHECK(c.user.empty());
  c = parse_store_change("node a with spaces agents");
  CHECK(c.kind == Kind::agents);
  c = parse_store_change("node-a usage carol");
  CHECK(c.kind == Kind::usage);
  CHECK(c.user == "carol");
}

TEST_CASE("store change: the kind and key are the last two words") {
  // A username that reads like a kind is still a username.
  auto c = parse_store_change("n user upstreams");
  CHECK(c.kind == Kind::user);
  CHECK(c.user == "upstreams");
  c = parse_store_change("n user agents");
  CHECK(c.kind == Kind::user);
  CHECK(c.user == "agents");
  c = parse_store_change("n user user");
  CHECK(c.kind == Kind::user);
  CHECK(c.user == "user");
}

TEST_CASE("store change: anything else is a full read") {
  for (const char* p : {"", "import", "upstreams", "agents", "user", "node user", "node user ",
                        "node usage ", "node users bob", "hello world"}) {
    CAPTURE(p);
    CHECK(parse_store_change(p).kind == Kind::all);
  }
}
