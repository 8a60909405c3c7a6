// parse_users (src/config/users_loader.cpp): users.json fields and their messages.
#include <doctest/doctest.h>

#include "config/crypt_hash.h"
#include "config/user_fields.h"
#include "config_test_util.h"
#include "uringproxy/config.h"

using namespace up;
using up::test::all_messages;
using up::test::has_error;
using up::test::has_warning;
using up::test::kSha512;
using up::test::kYescrypt;

namespace {

struct Parsed {
  std::vector<User> users;
  Diagnostics diag;
  bool ok = false;
};

Parsed parse(const std::string& text, const char* path = "users.json") {
  Parsed p;
  p.ok = parse_users(text, path, p.users, p.diag);
  INFO(all_messages(p.diag));
  CHECK(p.ok == p.diag.ok());
  return p;
}

// {"users": [ {"username": name, "password": <hash>, extra} ]}
std::string one(const std::string& name, const std::string& extra = "") {
  std::string s = "{\"users\": [{\"username\": \"" + name + "\", \"password\": \"" + kSha512 + "\"";
  if (!extra.empty()) s += ", " + extra;
  return s + "}]}";
}

}  // namespace

TEST_CASE("config users: the documented example") {
  std::string text = std::string(R"({"users": [
  {"username": "alice", "password": ")") + kYescrypt + R"(", "uuid": "A1B2C3D4-E5F6-7890-1234-567890ABCDEF",
   "email": "alice@vless.local", "external_proxy_id": "proxy-us-east",
   "groups": ["us-east", "production"], "enabled": true,
   "max_connections": 100, "bandwidth_bps": 0, "allow": [], "deny": []},
  {"username": "charlie", "password": ")" + kSha512 + R"(", "external_proxy_id": null}
]})";
  Parsed p = parse(text);
  REQUIRE(p.ok);
  REQUIRE(p.users.size() == 2);
  const User& a = p.users[0];
  CHECK(a.username == "alice");
  CHECK(a.password_hash == kYescrypt);
  CHECK(a.uuid == "a1b2c3d4-e5f6-7890-1234-567890abcdef");  // stored lower-case
  CHECK(a.email == "alice@vless.local");
  CHECK(a.external_proxy_id == std::optional<std::string>("proxy-us-east"));
  REQUIRE(a.groups);
  CHECK(*a.groups == std::vector<std::string>{"us-east", "production"});
  CHECK(a.enabled);
  CHECK(a.max_connections == 100);
  const User& c = p.users[1];
  CHECK(!c.external_proxy_id);
  CHECK(!c.groups);  // absent = any group
  CHECK(c.uuid.empty());
  CHECK(c.enabled);
  CHECK_FALSE(has_warning(p.diag, {"users.json: users[0].max_connections: accepted, but per-user connection limits"}));  // landed: no warning
  CHECK(p.diag.warnings.empty());  // per-user limits landed
}

TEST_CASE("config users: plain passwords are refused without echoing them") {
  Parsed p = parse(R"({"users": [{"username": "bob", "password": "hunter2-secret"}]})", "conf/users.json");
  CHECK(!p.ok);
  REQUIRE(p.diag.errors.size() == 1);
  CHECK(p.diag.errors[0] ==
        "conf/users.json: user \"bob\" (users[0]).password: not a crypt(3) hash (use openssl "
        "passwd -6 or uringproxyctl user add)");
  CHECK(all_messages(p.diag).find("hunter2") == std::string::npos);

  // Near-misses of a hash are refused too, and still not echoed.
  std::string truncated = std::string(kSha512).substr(0, 40);
  Parsed t = parse(one("bob").replace(one("bob").find(kSha512), std::string(kSha512).size(), truncated));
  CHECK(has_error(t.diag, {"user \"bob\" (users[0]).password: not a crypt(3) hash"}));
  CHECK(all_messages(t.diag).find(truncated.substr(4)) == std::string::npos);

  CHECK(has_error(parse(R"({"users": [{"username": "bob"}]})").diag, {"user \"bob\" (users[0]).password: is required"}));
  CHECK(has_error(parse(R"({"users": [{"username": "bob", "password": 5}]})").diag,
                  {"user \"bob\" (users[0]).password: must be a crypt(3) hash string, not a number"}));
}

TEST_CASE("config users: crypt(3) hash shapes") {
  using config::is_crypt_hash;
  CHECK(is_crypt_hash(kSha512));
  CHECK(is_crypt_hash(kYescrypt));
  CHECK(is_crypt_hash("$gy$j9T$ERY.QaEWYuVILvclNC5Bv0$ep7kkiehJouJaPuRiR0KY2NvR9eeWBFIbNTRaLSQc5."));
  CHECK(is_crypt_hash("$7$CU..../....3GC67jgewhjRR.l2Fxdy60$zoV4DyUgcgaO/kA9NMTIufxruE0kzheAZ6xhEcXfvj/"));
  CHECK(is_crypt_hash("$2b$05$tYPIycuhRELl2xXiaFFs2.35Dpt0MZmV9ZJJ4xqzRZZfDaVwAc1Ou"));
  CHECK(is_crypt_hash("$2a$05$.zsjX5uDeHATgH/2wwI4lujobBv0q7MlMImC7iYFUNgfupMe5tBEK"));
  CHECK(is_crypt_hash("$2y$10$.zsjX5uDeHATgH/2wwI4lujobBv0q7MlMImC7iYFUNgfupMe5tBEK"));
  CHECK(is_crypt_hash("$5$ecJ9bkwsPAU90SLS$ciYFil24uJT2XWOrfkvSuCfr6oTGgRE06fgNIbw.cJ2"));
  CHECK(is_crypt_hash("$6$rounds=10000$k48aY2tlRB144ZZy$HNBvP791gOg7Ec.4BvCc6BDAl4v46MUgsIMzQBAdW7udYXMmGEWdFDLg2HehdTn0LpgMbdLpnVp1EEkU0QXNv."));
  CHECK(!is_crypt_hash(""));
  CHECK(!is_crypt_hash("password"));
  CHECK(!is_crypt_hash("$1$abc$def"));  // md5-crypt: too weak to accept
  CHECK(!is_crypt_hash("$6$salt$short"));
  CHECK(!is_crypt_hash("$2b$99$tYPIycuhRELl2xXiaFFs2.35Dpt0MZmV9ZJJ4xqzRZZfDaVwAc1Ou"));
  CHECK(!is_crypt_hash("$2b$05$tYPIycuhRELl2xXiaFFs2.35Dpt0MZmV9ZJJ4xqzRZZfDaVwAc1O"));
  CHECK(!is_crypt_hash("$y$j9T$$r7Jrf8nYNInaIvf3kBFBhfxv5hMxv4aWP8SeLHm.OUD"));
  CHECK(!is_crypt_hash("$y$j9T$R1MEyMwxm3hfa.zJytAYG0$r7Jrf8nYNInaIvf3kBFBhfxv5hMxv4aWP8SeLHm.OU!"));
  CHECK(!is_crypt_hash("$6$k48aY2tlRB144ZZy$HNBvP791gOg7Ec.4BvCc6BDAl4v46MUgsIMzQBAdW7udYXMmGEWdFDLg2HehdTn0LpgMbdLpnVp1EEkU0QXNv. "));
}

TEST_CASE("config users: username rules") {
  CHECK(parse(one("a-b_c@d")).ok);
  CHECK(parse(one(std::string(64, 'x'))).ok);
  CHECK(has_error(parse(one(std::string(65, 'x'))).diag, {"users[0].username: is longer than 64 bytes"}));
  CHECK(has_error(parse(one("")).diag, {"users[0].username: must not be empty"}));
  CHECK(has_error(parse(one("alice.us")).diag, {"users[0].username: \"alice.us\" contains '.'"}));
  CHECK(has_error(parse(one("al:ice")).diag, {"users[0].username: \"al:ice\" contains ':'"}));
  CHECK(has_error(parse(one("al ice")).diag, {"contains whitespace"}));
  CHECK(has_error(parse(one("al\\tice")).diag, {"contains whitespace"}));
  CHECK(has_error(parse(R"({"users": [{"password": "x"}]})").diag, {"users[0].username: is required"}));
  CHECK(config::check_username("bob").empty());

  std::string dup = std::string("{\"users\": [{\"username\": \"bob\", \"password\": \"") + kSha512 +
                    "\"}, {\"username\": \"bob\", \"password\": \"" + kSha512 + "\"}]}";
  CHECK(has_error(parse(dup).diag, {"users.json: user \"bob\" (users[1]).username: is already user \"bob\" (users[0]); usernames must be unique"}));
}

TEST_CASE("config users: uuid rules") {
  std::string out;
  CHECK(config::normalise_uuid("A1B2C3D4-E5F6-7890-1234-567890ABCDEF", out));
  CHECK(out == "a1b2c3d4-e5f6-7890-1234-567890abcdef");
  CHECK(!config::normalise_uuid("a1b2c3d4e5f6-7890-1234-567890abcdef0", out));
  // The seed's example "bob" uuid has a 'g': not hex.
  Parsed bad = parse(one("bob", R"("uuid": "b1c2d3e4-f5a6-7891-2345-678901bcdefg")"));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).uuid: \"b1c2d3e4-f5a6-7891-2345-678901bcdefg\" is not a UUID (8-4-4-4-12 hex digits"}));
  CHECK(parse(one("bob", R"("uuid": "")")).users.at(0).uuid.empty());
  std::string dup = std::string("{\"users\": [{\"username\": \"a\", \"password\": \"") + kSha512 +
                    "\", \"uuid\": \"a1b2c3d4-e5f6-7890-1234-567890abcdef\"}, {\"username\": \"b\", \"password\": \"" +
                    kSha512 + "\", \"uuid\": \"A1B2C3D4-E5F6-7890-1234-567890ABCDEF\"}]}";
  CHECK(has_error(parse(dup).diag, {"user \"b\" (users[1]).uuid: is the same as user \"a\" (users[0]).uuid"}));
}

TEST_CASE("config users: optional fields") {
  Parsed p = parse(one("bob", R"("enabled": false, "email": "b@x", "groups": [], "bandwidth_bps": 8000000,
                                 "allow": ["*.example.com"], "deny": ["10.0.0.0/8"])"));
  REQUIRE(p.ok);
  const User& u = p.users.at(0);
  CHECK(!u.enabled);
  CHECK(u.email == "b@x");
  REQUIRE(u.groups);
  CHECK(u.groups->empty());  // present and empty: no group allowed
  CHECK(u.bandwidth_bps == 8000000);
  CHECK(u.allow == std::vector<std::string>{"*.example.com"});
  CHECK_FALSE(has_warning(p.diag, {"users[0].bandwidth_bps: accepted, but per-user bandwidth limits"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"users[0].allow: accepted, but per-user ACLs"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"users[0].deny: accepted"}));  // landed: no warning

  Parsed bad = parse(one("bob", R"("enabled": 1, "groups": ["a.b", 3], "external_proxy_id": "",
                                   "max_connections": -1, "allow": ["10.1.2.3/8"], "email": null)"));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).enabled: must be true or false, not a number"}));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).groups[0]: \"a.b\" is not a group name"}));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).groups[1]: must be a string, not a number"}));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).external_proxy_id: must be the id of a proxy in the proxies file, or null"}));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).max_connections: -1 is out of range"}));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).allow[0]: \"10.1.2.3/8\" has bits set past the prefix (did you mean \"10.0.0.0/8\"?)"}));
  CHECK(has_error(bad.diag, {"user \"bob\" (users[0]).email: must be a string, not null"}));
}

TEST_CASE("config users: per-user limits have landed: no warnings for any user") {
  std::string text = "{\"users\": [";
  for (int i = 0; i < 5; ++i) {
    if (i) text += ",";
    text += "{\"username\": \"u" + std::to_string(i) + "\", \"password\": \"" + kSha512 +
            "\", \"max_connections\": 3}";
  }
  Parsed p = parse(text + "]}");
  REQUIRE(p.ok);
  CHECK(p.diag.warnings.empty());
}

TEST_CASE("config users: unknown fields, seed fields and top level") {
  Parsed p = parse(one("bob", R"("emial": "x", "created_at": "2026-01-07T00:00:00Z", "connection_id": 5)"));
  CHECK(p.diag.errors.size() == 1);
  CHECK(has_error(p.diag, {"users.json: user \"bob\" (users[0]).emial: unknown field (did you mean \"email\"?)"}));
  CHECK(p.diag.warnings.empty());

  CHECK(has_error(parse(R"({"user": []})").diag, {"users.json: users: is required"}));
  CHECK(has_error(parse(R"({"user": []})").diag, {"users.json: user: unknown field (did you mean \"users\"?)"}));
  CHECK(has_error(parse(R"([])").diag, {"users.json: the top level must be an object {\"users\": [...]}"}));
  CHECK(has_error(parse(R"({"users": [1]})").diag, {"users[0]: must be an object"}));
  CHECK(parse(R"({"users": []})").ok);
  CHECK(parse("// users\n{\"users\": [],}").ok);
}

TEST_CASE("config users: messages name the user, then the index") {
  std::string text = "{\"users\": [";
  for (const char* name : {"alice", "bob", "carol"})
    text += std::string("{\"username\": \"") + name + "\", \"password\": \"" + kSha512 + "\"},";
  // An operator with thousands of users finds dave by name, not by counting entries.
  text += R"({"username": "dave", "password": "plain-text", "bandwidth_bps": "fast"},)";
  text += R"({"username": "bad.name", "password": "plain-text"}]})";
  Parsed p = parse(text);
  CHECK(!p.ok);
  CHECK(has_error(p.diag, {"users.json: user \"dave\" (users[3]).password: not a crypt(3) hash (use "
                           "openssl passwd -6 or uringproxyctl user add)"}));
  CHECK(has_error(p.diag, {"users.json: user \"dave\" (users[3]).bandwidth_bps: must be an integer"}));
  // A name that is not one (here the cause of the error) is not used to name the entry.
  CHECK(has_error(p.diag, {"users.json: users[4].username: \"bad.name\" contains '.'"}));
  CHECK(has_error(p.diag, {"users.json: users[4].password: not a crypt(3) hash"}));
  CHECK(all_messages(p.diag).find("plain-text") == std::string::npos);
}

TEST_CASE("config users: an absent limit inherits the default, an explicit 0 lifts it") {
  Parsed p = parse(std::string("{\"users\": [") +
                   "{\"username\": \"deflt\", \"password\": \"" + kSha512 + "\"}," +
                   "{\"username\": \"free\", \"password\": \"" + kSha512 +
                   "\", \"max_connections\": 0, \"bandwidth_bps\": 0}," +
                   "{\"username\": \"own\", \"password\": \"" + kSha512 +
                   "\", \"max_connections\": 5, \"bandwidth_bps\": 8000}]}");
  REQUIRE(p.ok);
  REQUIRE(p.users.size() == 3);
  CHECK(!p.users[0].max_connections);
  CHECK(!p.users[0].bandwidth_bps);
  CHECK(p.users[1].max_connections == std::optional<uint32_t>(0));
  CHECK(p.users[1].bandwidth_bps == std::optional<uint64_t>(0));

  LimitsConfig defaults;
  defaults.max_connections_per_user = 1;
  defaults.bandwidth_bps_per_user = 1'000'000;
  UserLimits d = effective_limits(p.users[0], defaults);
  CHECK(d.max_connections == 1);
  CHECK(d.bandwidth_bps == 1'000'000);
  UserLimits f = effective_limits(p.users[1], defaults);
  CHECK(f.max_connections == 0);  // unlimited, although the default is 1
  CHECK(f.bandwidth_bps == 0);
  UserLimits o = effective_limits(p.users[2], defaults);
  CHECK(o.max_connections == 5);
  CHECK(o.bandwidth_bps == 8000);
  // No defaults: only the user's own fields limit.
  CHECK(effective_limits(p.users[0], LimitsConfig{}).max_connections == 0);
  CHECK(effective_limits(p.users[2], LimitsConfig{}).max_connections == 5);
}

TEST_CASE("config users: quota_bytes and quota_period") {
  Parsed p = parse(one("alice", R"("quota_bytes": 1048576, "quota_period": "month")"));
  REQUIRE(p.ok);
  CHECK(p.users[0].quota_bytes == 1048576);
  CHECK(p.users[0].quota_period == QuotaPeriod::month);
  for (const char* period : {"day", "week"}) {
    Parsed q = parse(one("alice", std::string(R"("quota_bytes": 5, "quota_period": ")") + period +
                                      "\""));
    CHECK(q.ok);
  }
  // Absent and 0 both mean no quota; a period alone is harmless.
  Parsed none = parse(one("bob"));
  CHECK(none.users[0].quota_bytes == 0);
  CHECK(none.users[0].quota_period == QuotaPeriod::none);
  CHECK(parse(one("bob", R"("quota_bytes": 0)")).ok);
  CHECK(parse(one("bob", R"("quota_period": "day")")).ok);
}

TEST_CASE("config users: bad quota fields name the user and the field") {
  Parsed p = parse(one("alice", R"("quota_bytes": 100, "quota_period": "year")"));
  CHECK_FALSE(p.ok);
  CHECK(has_error(p.diag, {"users.json: user \"alice\" (users[0]).quota_period: \"year\" is not "
                           "a quota period", "\"day\", \"week\" or \"month\""}));
  Parsed missing = parse(one("alice", R"("quota_bytes": 100)"));
  CHECK(has_error(missing.diag, {"user \"alice\" (users[0]).quota_period: is required with "
                                 "quota_bytes"}));
  Parsed negative = parse(one("alice", R"("quota_bytes": -1, "quota_period": "day")"));
  CHECK(has_error(negative.diag, {"user \"alice\" (users[0]).quota_bytes"}));
  Parsed text = parse(one("alice", R"("quota_bytes": "10G", "quota_period": "day")"));
  CHECK(has_error(text.diag, {"user \"alice\" (users[0]).quota_bytes"}));
  Parsed type = parse(one("alice", R"("quota_bytes": 10, "quota_period": 30)"));
  CHECK(has_error(type.diag, {"user \"alice\" (users[0]).quota_period"}));
  CHECK(type.diag.errors.size() == 1);  // the type error, not "is required" as well
}
