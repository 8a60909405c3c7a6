// src/route/snapshot.cpp: build_snapshot's errors name the upstream by id and by its place in
// the proxies file; the snapshot after a live edit of one user shares every other user with the
// one before, and finds users by name and by VLESS id exactly as a full rebuild would.
#include "route/snapshot.h"

#include <doctest/doctest.h>

#include "route/upstream_health.h"

using namespace up;

TEST_CASE("snapshot: a TLS upstream whose CA file cannot be read is named in the error") {
  up::ConfigSet set;
  set.config.proxies_file = "/etc/uringproxy/external_proxy.json";
  up::UpstreamProxy plain;
  plain.id = "eu1";
  plain.type = up::UpstreamType::socks5;
  plain.address = "10.0.0.1";
  plain.port = 1080;
  up::UpstreamProxy tls = plain;
  tls.id = "us1";
  tls.type = up::UpstreamType::https;
  tls.tls.server_name = "10.0.0.1";
  tls.tls.ca_file = "/nonexistent/uringproxy-test-ca.pem";
  set.proxies = {plain, tls};
  up::HealthBoard health;
  up::UserBoard users;
  std::vector<std::string> errors;
  CHECK(up::build_snapshot(set, 1, health, users, errors) == nullptr);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].rfind("/etc/uringproxy/external_proxy.json: upstream \"us1\" (proxies[1])"
                        ".tls.ca_file: /nonexistent/uringproxy-test-ca.pem",
                        0) == 0);
}

namespace {

User user(const std::string& name, const std::string& uuid = "") {
  User u;
  u.username = name;
  u.password_hash = "$6$salt$" + name;
  u.uuid = uuid;
  return u;
}

// prefix + i, built by appending (GCC 12 warns falsely on "literal" + std::to_string(i)).
std::string nth(const char* prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

const std::string kUuidA = "a1b2c3d4-e5f6-7890-1234-567890abcdef";
const std::string kUuidB = "b1b2c3d4-e5f6-7890-1234-567890abcdef";

}  // namespace

TEST_CASE("snapshot: one user edited, the rest shared") {
  HealthBoard health;
  UserBoard board;
  ConfigSet set;
  for (int i = 0; i < 100; ++i) set.users.push_back(user(nth("u", i)));
  set.users[7].uuid = kUuidA;
  set.users[8].allow = {"10.0.0.0/8"};
  std::vector<std::string> errors;
  auto s1 = build_snapshot(set, 1, health, board, errors);
  REQUIRE(s1);
  CHECK(s1->find_user_by_uuid(kUuidA)->username == "u7");
  CHECK(s1->find_user_acl("u8") != nullptr);
  CHECK(s1->find_user_acl("u9") == nullptr);

  // Added, then changed, then deleted: each snapshot sees its own version.
  User added = user("new", kUuidB);
  auto s2 = snapshot_with_user(*s1, 2, "new", &added, board);
  User changed = added;
  changed.enabled = false;
  auto s3 = snapshot_with_user(*s2, 3, "new", &changed, board);
  auto s4 = snapshot_with_user(*s3, 4, "new", nullptr, board);
  CHECK(s1->find_user("new") == nullptr);
  CHECK(s2->find_user("new")->enabled);
  CHECK(!s3->find_user("new")->enabled);
  CHECK(s4->find_user("new") == nullptr);
  CHECK(s2->find_user_by_uuid(kUuidB)->username == "new");
  CHECK(s4->find_user_by_uuid(kUuidB) == nullptr);
  // The same limits state across snapshots (it outlives them), and the others are untouched.
  CHECK(s2->find_user_state("new") == s3->find_user_state("new"));
  CHECK(s4->find_user("u99") == s1->find_user("u99"));  // shared, not copied
  CHECK(s4->users.shares_base_with(s1->users));
  CHECK(s4->find_user_acl("u8") == s1->find_user_acl("u8"));

  // A uuid moved from one user to another, and a user deleted: no stale lookups.
  User u7 = *s1->find_user("u7");
  u7.uuid.clear();
  auto s5 = snapshot_with_user(*s1, 5, "u7", &u7, board);
  CHECK(s5->find_user_by_uuid(kUuidA) == nullptr);
  User u9 = *s1->find_user("u9");
  u9.uuid = kUuidA;
  auto s6 = snapshot_with_user(*s5, 6, "u9", &u9, board);
  CHECK(s6->find_user_by_uuid(kUuidA)->username == "u9");
  auto s7 = snapshot_with_user(*s6, 7, "u9", nullptr, board);
  CHECK(s7->find_user_by_uuid(kUuidA) == nullptr);
  CHECK(s1->find_user_by_uuid(kUuidA)->username == "u7");
}

TEST_CASE("snapshot: many edits fold the overlay into a new base") {
  HealthBoard health;
  UserBoard board;
  ConfigSet set;
  for (int i = 0; i < 10; ++i) set.users.push_back(user(nth("u", i)));
  std::vector<std::string> errors;
  auto s = build_snapshot(set, 1, health, board, errors);
  REQUIRE(s);
  auto first = std::move(s);
  std::unique_ptr<Snapshot> cur;
  const Snapshot* prev = first.get();
  bool folded = false;
  for (int i = 0; i < 2000; ++i) {
    User u = user(nth("e", i), i == 1500 ? kUuidA : "");
    auto next = snapshot_with_user(*prev, 2 + static_cast<uint64_t>(i), u.username, &u, board);
    folded = folded || !next->users.shares_base_with(first->users);
    CHECK(next->users.overlay_size() <= 1025);
    cur = std::move(next);
    prev = cur.get();
  }
  CHECK(folded);
  for (int i = 0; i < 2000; i += 97) CHECK(cur->find_user(nth("e", i)) != nullptr);
  for (int i = 0; i < 10; ++i) CHECK(cur->find_user(nth("u", i)) != nullptr);
  CHECK(cur->find_user_by_uuid(kUuidA)->username == "e1500");
  auto gone = snapshot_with_user(*cur, 9999, "u3", nullptr, board);
  CHECK(gone->find_user("u3") == nullptr);
}

// snapshot_with_agents: an agent edit of the PostgreSQL store rebuilds the groups (upstreams in
// the proxies' order, then the agents) and shares the users and upstreams with the last one.
TEST_CASE("snapshot: the agents edited, the users and upstreams shared") {
  HealthBoard health;
  UserBoard board;
  ConfigSet set;
  set.users.push_back(user("alice"));
  for (const char* id : {"b1", "a1"}) {
    UpstreamProxy p;
    p.id = id;
    p.type = UpstreamType::socks5;
    p.address = "10.0.0.1";
    p.port = 1080;
    p.group = "residential";
    set.proxies.push_back(p);
  }
  set.config.groups["residential"].policy = GroupPolicy::hash_user;
  Agent home1{"home-1", "$6$salt$x", "residential", true};
  set.agents = {home1};
  std::vector<std::string> errors;
  auto s1 = build_snapshot(set, 1, health, board, errors);
  REQUIRE(s1);
  REQUIRE(s1->find_group("residential")->members.size() == 3);

  Agent home2{"home-2", "$6$salt$y", "mobile", true};
  Agent off = home1;
  off.enabled = false;
  auto s2 = snapshot_with_agents(*s1, 2, set.proxies, {off, home2}, health);
  REQUIRE(s2);
  CHECK(s2->generation == 2);
  CHECK(s2->find_user("alice") == s1->find_user("alice"));  // shared, not copied
  CHECK(s2->upstreams.at("b1") == s1->upstreams.at("b1"));
  const Group* g = s2->find_group("residential");
  REQUIRE(g);
  CHECK(g->policy == GroupPolicy::hash_user);
  REQUIRE(g->members.size() == 3);
  CHECK(g->members[0]->config.id == "b1");  // the proxies' order, as build_snapshot has it
  CHECK(g->members[1]->config.id == "a1");
  CHECK(g->members[2]->config.id == "agent:home-1");
  CHECK_FALSE(g->members[2]->config.enabled);
  // The agent keeps its health (its link's state) across snapshots.
  CHECK(g->members[2]->health == s1->find_group("residential")->members[2]->health);
  REQUIRE(s2->find_group("mobile"));
  CHECK(s2->find_group("mobile")->members[0]->config.id == "agent:home-2");
  CHECK(s2->find_agent("home-2") != nullptr);

  auto s3 = snapshot_with_agents(*s2, 3, set.proxies, {}, health);
  CHECK(s3->find_agent("home-1") == nullptr);
  CHECK(s3->find_group("mobile") == nullptr);
  CHECK(s3->find_group("residential")->members.size() == 2);
}
