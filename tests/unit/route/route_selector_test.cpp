// src/route/route_selector.cpp: a UDP ASSOCIATE on a group route takes the members that carry
// UDP (socks5) only; a group with no such member follows its on_failure (a refusal is 0x07); a
// group whose socks5 members are all down is a group without a healthy member.
#include "route/route_selector.h"

#include <doctest/doctest.h>

#include <set>

#include "route/upstream_health.h"

using namespace up;

namespace {

UpstreamProxy member(const std::string& id, UpstreamType type, const std::string& group,
                     bool enabled = true) {
  UpstreamProxy p;
  p.id = id;
  p.type = type;
  p.address = "127.0.0.1";
  p.port = 1080;
  p.group = group;
  p.enabled = enabled;
  return p;
}

struct Built {
  HealthBoard health;
  UserBoard users;
  std::unique_ptr<Snapshot> s;
};

void build(Built& b, const ConfigSet& set) {
  std::vector<std::string> errors;
  b.s = build_snapshot(set, 1, b.health, b.users, errors);
  REQUIRE(errors.empty());
  REQUIRE(b.s);
}

}  // namespace

TEST_CASE("route selector: UDP on a group takes its socks5 members only") {
  ConfigSet set;
  set.config.upstream.attempts = 1;
  set.config.groups["mix"] = {};
  set.config.groups["web"] = {};
  set.config.groups["webdirect"].on_failure.kind = OnFailure::Kind::direct;
  set.config.groups["down"] = {};
  set.config.routing.group_fallback_default = false;
  set.proxies = {member("mix-http", UpstreamType::http, "mix"),
                 member("mix-socks", UpstreamType::socks5, "mix"),
                 member("web-https", UpstreamType::https, "web"),
                 member("web-socks5s", UpstreamType::socks5s, "web"),
                 member("wd-http", UpstreamType::http, "webdirect"),
                 member("down-http", UpstreamType::http, "down"),
                 member("down-socks", UpstreamType::socks5, "down", false)};
  Built b;
  build(b, set);
  const Snapshot& s = *b.s;
  RouteCursors cursors;

  // TCP: round robin over both members; UDP: the socks5 one, every time.
  std::set<std::string> tcp;
  for (int i = 0; i < 4; ++i) {
    RoutePlan p = plan_route(s, {"alice", "mix"}, nullptr, cursors);
    REQUIRE(p.kind == RoutePlan::Kind::upstream);
    tcp.insert(p.attempts.front()->config.id);
  }
  CHECK(tcp == std::set<std::string>{"mix-http", "mix-socks"});
  for (int i = 0; i < 4; ++i) {
    RoutePlan p = plan_route(s, {"alice", "mix"}, nullptr, cursors, true);
    REQUIRE(p.kind == RoutePlan::Kind::upstream);
    REQUIRE(p.attempts.size() == 1);
    CHECK(p.attempts.front()->config.id == "mix-socks");
  }

  // No member carries UDP: on_failure (routing's reject) refuses with 0x07, never direct.
  RoutePlan web = plan_route(s, {"alice", "web"}, nullptr, cursors, true);
  CHECK(web.kind == RoutePlan::Kind::refuse);
  CHECK(web.socks_reply == 0x07);
  // ... unless on_failure says direct.
  CHECK(plan_route(s, {"alice", "webdirect"}, nullptr, cursors, true).kind ==
        RoutePlan::Kind::direct);
  // TCP on the same group is not affected.
  CHECK(plan_route(s, {"alice", "web"}, nullptr, cursors).kind == RoutePlan::Kind::upstream);

  // The socks5 member is disabled: no healthy member for UDP (group_fallback reject: 0x01).
  RoutePlan down = plan_route(s, {"alice", "down"}, nullptr, cursors, true);
  CHECK(down.kind == RoutePlan::Kind::refuse);
  CHECK(down.socks_reply == 0x01);
}
