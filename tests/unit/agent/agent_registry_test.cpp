// src/agent/agent_registry.cpp: sessions (a newer control link replaces an older one and ends
// its idle connections), idle pools, and the agent's group membership through its health entry
// (src/route/snapshot.cpp makes agents members; route/route_selector.cpp picks among them).
#include "agent/agent_registry.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include "route/route_selector.h"
#include "route/snapshot.h"
#include "route/upstream_health.h"

using namespace up;

namespace {
IdleReverse idle_fd() {
  IdleReverse r;
  r.fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return r;
}
bool is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }
}  // namespace

TEST_CASE("agent registry: sessions, idle pool, replacement and kick") {
  HealthBoard board;
  UpstreamHealth* h = board.get_agent("agent:home-1");
  CHECK_FALSE(h->is_up());  // down until a control link authenticates
  AgentRegistry reg;
  CHECK(reg.current("home-1") == 0);
  CHECK_FALSE(reg.take_idle("home-1"));

  uint64_t s1 = reg.connect("home-1", "residential", "127.0.0.1:1", "v1", h);
  CHECK(s1 != 0);
  CHECK(h->is_up());
  IdleReverse a = idle_fd(), b = idle_fd();
  int fa = a.fd, fb = b.fd;
  CHECK(reg.add_idle("home-1", s1, std::move(a)));
  CHECK(reg.add_idle("home-1", s1, std::move(b)));
  CHECK(reg.list().at(0).idle == 2);
  auto got = reg.take_idle("home-1");
  REQUIRE(got);
  CHECK(got->fd == fa);  // oldest first
  close(got->fd);

  // A newer control link replaces the old one: the old session's idle connections are closed,
  // and a reverse link of the old session is refused.
  uint64_t s2 = reg.connect("home-1", "residential", "127.0.0.1:2", "v2", h);
  CHECK(s2 != s1);
  CHECK_FALSE(is_open(fb));
  IdleReverse late = idle_fd();
  CHECK_FALSE(reg.add_idle("home-1", s1, std::move(late)));
  close(late.fd);  // still the caller's to close
  reg.disconnect("home-1", s1);  // the old link ending does not end the new one
  CHECK(h->is_up());
  CHECK(reg.current("home-1") == s2);

  IdleReverse c = idle_fd();
  int fc = c.fd;
  CHECK(reg.add_idle("home-1", s2, std::move(c)));
  CHECK(reg.kick("home-1"));
  CHECK_FALSE(h->is_up());
  CHECK_FALSE(is_open(fc));
  CHECK(reg.current("home-1") == 0);
  CHECK_FALSE(reg.kick("home-1"));

  reg.tunnel_started("home-1");
  reg.tunnel_started("home-1");
  reg.tunnel_ended("home-1");
  CHECK(reg.list().at(0).tunnels == 1);
  CHECK(reg.list().at(0).tunnels_total == 2);
  CHECK(reg.next_tunnel_id() != reg.next_tunnel_id());
}

TEST_CASE("agents are group members only while connected") {
  ConfigSet set;
  set.config.upstream.attempts = 1;
  set.config.routing.group_fallback_default = false;
  Agent a;
  a.id = "home-1";
  a.secret_hash = "$6$x$y";
  a.group = "residential";
  set.agents = {a};
  HealthBoard health;
  UserBoard users;
  std::vector<std::string> errors;
  auto s = build_snapshot(set, 1, health, users, errors);
  REQUIRE(s);
  RouteCursors cursors;
  RoutePlan down = plan_route(*s, {"alice", "residential"}, nullptr, cursors);
  CHECK(down.kind == RoutePlan::Kind::refuse);  // no member connected, group_fallback reject
  AgentRegistry reg;
  reg.connect("home-1", "residential", "", "", s->find_agent("home-1")->member->health);
  RoutePlan up = plan_route(*s, {"alice", "residential"}, nullptr, cursors);
  REQUIRE(up.kind == RoutePlan::Kind::upstream);
  CHECK(up.attempts.at(0)->config.id == "agent:home-1");
  CHECK(up.attempts.at(0)->config.type == UpstreamType::agent);
}
