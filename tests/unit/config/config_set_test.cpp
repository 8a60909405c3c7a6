// load_config_set (src/config/config_set.cpp): reading the three files together, the proxies
// file's mode, and references between files.
#include <doctest/doctest.h>

#include <cstring>

#include "config/config_test_paths.h"
#include "config_test_util.h"
#include "uringproxy/config.h"

using namespace up;
using up::test::all_messages;
using up::test::has_error;
using up::test::has_warning;
using up::test::kSha512;
using up::test::TempDir;

namespace {

std::string config_with(const std::string& extra) {
  std::string s = R"({
  "listeners": [{"name": "socks", "protocol": "socks5", "listen": "127.0.0.1:1080"}],
  "users_file": "users.json")";
  if (!extra.empty()) s += ",\n  " + extra;
  return s + "\n}\n";
}

std::string user(const std::string& name, const std::string& extra = "") {
  std::string s = "{\"username\": \"" + name + "\", \"password\": \"" + kSha512 + "\"";
  if (!extra.empty()) s += ", " + extra;
  return s + "}";
}

struct Loaded {
  ConfigSet set;
  Diagnostics diag;
  bool ok = false;
};

Loaded load(const std::string& path) {
  Loaded l;
  l.ok = load_config_set(path, l.set, l.diag);
  INFO(all_messages(l.diag));
  CHECK(l.ok == l.diag.ok());
  return l;
}

const char* kProxies = R"({"proxies": [
  {"id": "us1", "type": "socks5", "address": "10.0.0.1", "port": 1080, "group": "us-east"},
  {"id": "eu1", "type": "http", "address": "10.0.0.2", "port": 3128, "password": "pw"}]})";

}  // namespace

TEST_CASE("config set: the shipped demo configuration loads cleanly") {
  Loaded l = load(std::string(URINGPROXY_SOURCE_ROOT) + "/config/uringproxy.json");
  REQUIRE(l.ok);
  // git checks users.json out 0644; the only advice then is to chmod it (scripts/run does).
  for (const auto& w : l.diag.warnings) CHECK(w.find("readable by every local user") != std::string::npos);
  REQUIRE(l.set.config.listeners.size() == 2);
  CHECK(l.set.config.listeners[0].listen.text == "127.0.0.1:1080");
  CHECK(l.set.config.listeners[1].listen.text == "127.0.0.1:8080");
  CHECK(l.set.config.acl.deny_private);
  CHECK(!l.set.config.metrics_listen);
  CHECK(l.set.config.proxies_file.empty());
  REQUIRE(l.set.users.size() == 1);
  CHECK(l.set.users[0].username == "demo");
  CHECK(l.set.users[0].password_hash.rfind("$6$", 0) == 0);

  // The example proxies file parses too.
  Diagnostics d;
  std::vector<UpstreamProxy> proxies;
  CHECK(parse_proxies("{\"proxies\": []}", std::string(URINGPROXY_SOURCE_ROOT) + "/config/external_proxy.json", proxies, d));
}

TEST_CASE("config set: users and proxies load with their paths resolved") {
  TempDir dir;
  std::string cfg = dir.write("conf/uringproxy.json", config_with(R"("proxies_file": "secret/px.json")"));
  dir.write("conf/users.json", "{\"users\": [" + user("alice", R"("external_proxy_id": "us1", "groups": ["us-east"])") + "]}");
  dir.write("conf/secret/px.json", kProxies, 0600);
  Loaded l = load(cfg);
  REQUIRE(l.ok);
  CHECK(l.set.users.size() == 1);
  CHECK(l.set.proxies.size() == 2);
  CHECK(l.set.config.users_file == dir.path() + "/conf/users.json");
  CHECK(l.set.config.proxies_file == dir.path() + "/conf/secret/px.json");
  CHECK_FALSE(has_warning(l.diag, {"proxies: accepted, but upstream proxies are not implemented yet"}));  // landed: no warning
}

TEST_CASE("config set: missing and unreadable files name the path and errno text") {
  TempDir dir;
  Loaded none = load(dir.path() + "/nope.json");
  CHECK(has_error(none.diag, {(dir.path() + "/nope.json: cannot open: No such file or directory (check the path given with --config)").c_str()}));

  std::string cfg = dir.write("uringproxy.json", config_with(R"("proxies_file": "px.json")"));
  Loaded l = load(cfg);
  CHECK(has_error(l.diag, {"users.json: cannot open: No such file or directory (users_file in ", cfg.c_str()}));
  CHECK(has_error(l.diag, {"px.json: cannot open: No such file or directory (proxies_file in "}));

  std::string d = dir.path() + "/isdir.json";
  REQUIRE(mkdir(d.c_str(), 0700) == 0);
  CHECK(has_error(load(d).diag, {"isdir.json: is not a regular file"}));
}

TEST_CASE("config set: the proxies file is refused when group or others may read it") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(R"("proxies_file": "px.json")"));
  dir.write("users.json", R"({"users": []})");
  // mkstemp for the secret file itself, as an operator's editor would leave it.
  std::string px = dir.path() + "/px.json";
  {
    std::string tmpl = dir.path() + "/px-XXXXXX";
    int fd = mkstemp(tmpl.data());
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, kProxies, strlen(kProxies)) == static_cast<ssize_t>(strlen(kProxies)));
    close(fd);
    REQUIRE(rename(tmpl.c_str(), px.c_str()) == 0);
  }
  CHECK(load(cfg).ok);  // mkstemp makes it 0600

  REQUIRE(chmod(px.c_str(), 0644) == 0);
  Loaded l = load(cfg);
  CHECK(!l.ok);
  CHECK(has_error(l.diag, {"px.json: group or others may access it (mode 0644) and it holds upstream passwords; run chmod 600 "}));
  CHECK(all_messages(l.diag).find("\"pw\"") == std::string::npos);
  REQUIRE(chmod(px.c_str(), 0640) == 0);
  CHECK(has_error(load(cfg).diag, {"(mode 0640)"}));
  REQUIRE(chmod(px.c_str(), 0400) == 0);
  CHECK(load(cfg).ok);
}

TEST_CASE("config set: cross-references between the files") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(R"("proxies_file": "px.json",
      "routing": {"on_failure": "gone"},
      "groups": {"us-east": {"on_failure": "eu1"}, "asia": {"on_failure": "missing"}})"));
  dir.write("users.json", "{\"users\": [" + user("a", R"("external_proxy_id": "us1")") + "," +
                              user("b", R"("external_proxy_id": "nope", "groups": ["us-east", "mars"])") + "," +
                              user("c", R"("groups": ["mars"])") + "]}");
  dir.write("px.json", kProxies);
  Loaded l = load(cfg);
  CHECK(!l.ok);
  CHECK(l.diag.errors.size() == 3);
  CHECK(has_error(l.diag, {"uringproxy.json: routing.on_failure: \"gone\" names no upstream proxy: it is not the id of a proxy in"}));
  CHECK(has_error(l.diag, {"uringproxy.json: groups.asia.on_failure: \"missing\" names no upstream proxy"}));
  CHECK(has_error(l.diag, {"users.json: user \"b\" (users[1]).external_proxy_id: \"nope\" names no upstream proxy", "set null to route this user directly"}));
  CHECK(has_warning(l.diag, {"uringproxy.json: groups.asia: no upstream proxy has \"group\": \"asia\""}));
  CHECK(has_warning(l.diag, {"users.json: user \"b\" (users[1]).groups[1] (and 1 more users): no upstream proxy has \"group\": \"mars\""}));
  CHECK(!has_warning(l.diag, {"\"us-east\""}));
}

TEST_CASE("config set: an upstream reference without any proxies file") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(""));
  dir.write("users.json", "{\"users\": [" + user("a", R"("external_proxy_id": "us1")") + "]}");
  Loaded l = load(cfg);
  CHECK(has_error(l.diag, {"users.json: user \"a\" (users[0]).external_proxy_id: \"us1\" names no upstream proxy: there is no proxies_file in"}));
}

TEST_CASE("config set: errors in every file are reported together") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(R"("workers": 9999, "proxies_file": "px.json")"));
  dir.write("users.json", R"({"users": [{"username": "a.b", "password": "plain"}]})");
  dir.write("px.json", R"({"proxies": [{"id": "x", "type": "socks5", "address": "h", "port": 70000}]})");
  Loaded l = load(cfg);
  CHECK(has_error(l.diag, {"uringproxy.json: workers: 9999 is out of range"}));
  CHECK(has_error(l.diag, {"users.json: users[0].username"}));
  CHECK(has_error(l.diag, {"users.json: users[0].password: not a crypt(3) hash"}));
  CHECK(has_error(l.diag, {"px.json: upstream \"x\" (proxies[0]).port: 70000 is out of range"}));
  CHECK(l.diag.errors.size() == 4);
}

TEST_CASE("config set: files over limits.max_config_file_bytes are refused before reading") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(R"("proxies_file": "px.json",
      "limits": {"max_config_file_bytes": 4096})"));
  std::string users = "{\"users\": [";
  for (int i = 0; i < 100; ++i) {
    if (i) users += ",";
    users += user(std::string("u").append(std::to_string(i)));
  }
  users += "]}";
  REQUIRE(users.size() > 4096);
  dir.write("users.json", users);
  dir.write("px.json", kProxies, 0600);
  Loaded l = load(cfg);
  CHECK(!l.ok);
  CHECK(l.set.users.empty());
  CHECK(has_error(l.diag, {"users.json: is " , " bytes, more than the cap of 4096 bytes; raise "
                           "limits.max_config_file_bytes in ", "uringproxy.json, or shrink the file"}));
  CHECK(has_error(l.diag, {("is " + std::to_string(users.size()) + " bytes").c_str()}));
  CHECK(l.diag.errors.size() == 1);

  // The default cap is 64 MiB; a sparse file reports its size without being read.
  std::string big = dir.write("big.json", "");
  REQUIRE(truncate(big.c_str(), (64 << 20) + 1) == 0);
  std::string cfg2 = dir.write("big-users.json", R"({
  "listeners": [{"name": "socks", "protocol": "socks5", "listen": "127.0.0.1:1080"}],
  "users_file": "big.json"})");
  Loaded b = load(cfg2);
  CHECK(has_error(b.diag, {"big.json: is 67108865 bytes (64.0 MiB), more than the cap of 67108864 "
                           "bytes (64.0 MiB); raise limits.max_config_file_bytes"}));
  CHECK(kDefaultMaxConfigFileBytes == 64u << 20);

  // The same cap holds for the proxies file; at or under it, files load.
  dir.write("users.json", "{\"users\": [" + user("a") + "]}");
  std::string px(5000, ' ');
  px.replace(0, std::string(kProxies).size(), kProxies);
  dir.write("px.json", px, 0600);
  Loaded p = load(cfg);
  CHECK(has_error(p.diag, {"px.json: is 5000 bytes, more than the cap of 4096 bytes"}));
  dir.write("px.json", kProxies, 0600);
  CHECK(load(cfg).ok);

  // A cap under 1 KiB is a typo (MiB meant), not a cap.
  std::string cfg3 = dir.write("tiny.json", config_with(R"("limits": {"max_config_file_bytes": 64})"));
  CHECK(has_error(load(cfg3).diag, {"limits.max_config_file_bytes: 64 is out of range (1024.."}));
}

TEST_CASE("config set: read_config_file caps the main config too") {
  TempDir dir;
  std::string p = dir.write("c.json", std::string(2000, ' '));
  std::string text, err;
  CHECK(read_config_file(p, 2000, text, err));
  CHECK(text.size() == 2000);
  CHECK(!read_config_file(p, 1999, text, err));
  CHECK(err.find("is 2000 bytes, more than the cap of 1999 bytes") != std::string::npos);
  CHECK(!read_config_file(dir.path() + "/none.json", 2000, text, err));
  CHECK(err.find("cannot open") != std::string::npos);
}

TEST_CASE("config set: store.password_file is refused when group or others may read it") {
  TempDir dir;
  dir.write("users.json", R"({"users": []})");
  dir.write("db.secret", "pw\n", 0640);
  std::string cfg = dir.write("uringproxy.json", R"({
    "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1080"}],
    "users_file": "users.json",
    "store": {"type": "postgres", "dsn": "host=db", "node": "n", "password_file": "db.secret"}})");
  ConfigSet set;
  Diagnostics d;
  CHECK_FALSE(load_config_set(cfg, set, d));
  CHECK(has_error(d, {"store.password_file: ", "db.secret: group or others may access it (mode "
                      "0640)", "chmod 600"}));
  CHECK(all_messages(d).find("pw\n") == std::string::npos);
}

TEST_CASE("config set: agents_file is checked in full") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(R"("agents_file": "agents.json",
      "groups": {"residential": {"policy": "hash_user"}})"));
  dir.write("users.json", "{\"users\": [" + user("a", R"("groups": ["residential"])") + "]}");
  std::string agents = std::string("{\"agents\": [{\"id\": \"home-1\", \"secret\": \"") + kSha512 +
                       "\", \"group\": \"residential\", \"enabled\": true}]}";
  dir.write("agents.json", agents, 0600);
  Loaded l = load(cfg);
  CHECK(l.ok);
  CHECK(l.diag.errors.empty());
  REQUIRE(l.set.agents.size() == 1);
  CHECK(l.set.agents[0].id == "home-1");
  // A group whose only members are agents is a real group: no warning for it or its users.
  CHECK_FALSE(has_warning(l.diag, {"\"residential\""}));

  SUBCASE("an error in the file is named, and nothing claims it is valid") {
    dir.write("agents.json", R"({"agents": [{"id": "home-1", "secret": "x", "group": "residential"}]})", 0600);
    Loaded bad = load(cfg);
    CHECK(bad.diag.errors.size() == 1);
    CHECK(has_error(bad.diag, {"agents.json: agent \"home-1\" (agents[0]).secret: not a crypt(3) hash"}));
  }
  SUBCASE("refused when group or others may read it") {
    dir.write("agents.json", agents, 0640);
    Loaded open = load(cfg);
    CHECK(open.diag.errors.size() == 1);
    CHECK(has_error(open.diag, {"agents.json: group or others may access it (mode 0640) and it holds the agents' secret hashes; run chmod 600 "}));
  }
  SUBCASE("a missing file names agents_file") {
    REQUIRE(unlink((dir.path() + "/agents.json").c_str()) == 0);
    CHECK(has_error(load(cfg).diag, {"agents.json: cannot open: No such file or directory (agents_file in "}));
  }
  SUBCASE("external_proxy_id names an agent as agent:ID") {
    dir.write("users.json", "{\"users\": [" + user("a", R"("external_proxy_id": "agent:home-1")") +
                                "," + user("b", R"("external_proxy_id": "agent:home-9")") + "]}");
    Loaded l2 = load(cfg);
    CHECK(l2.diag.errors.size() == 1);
    CHECK(has_error(l2.diag, {"users.json: user \"b\" (users[1]).external_proxy_id: \"agent:home-9\" names no agent: no agent in ", "agents.json has that id"}));
  }
}

TEST_CASE("config set: external_proxy_id naming an agent without an agents_file") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(""));
  dir.write("users.json", "{\"users\": [" + user("a", R"("external_proxy_id": "agent:home-1")") + "]}");
  CHECK(has_error(load(cfg).diag, {"users.json: user \"a\" (users[0]).external_proxy_id: \"agent:home-1\" names an agent, but there is no agents_file in"}));
}

// With the PostgreSQL store the agents are the store's: agents_file is not read (not even
// checked: it may be one already imported), but kept as store import's default, with a warning.
TEST_CASE("config set: a postgres node does not read agents_file, and says so") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", R"({
    "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1080"}],
    "agents_file": "agents.json",
    "store": {"type": "postgres", "dsn": "host=db", "node": "n"}})");
  dir.write("agents.json", "not json at all", 0644);
  Loaded l = load(cfg);
  CHECK(l.ok);
  CHECK(l.set.agents.empty());
  CHECK_MESSAGE(has_warning(l.diag, {"uringproxy.json: agents_file: is not read with",
                                     "postgres", "table agents", "store import",
                                     "remove agents_file once imported"}),
                all_messages(l.diag));
}

// apply_store_agents: the store's agents go through the agents_file's loader, named by table;
// a row that does not load is skipped with a warning naming it, the others serve.
TEST_CASE("store agents: loaded like the file, a bad row skipped and named") {
  ConfigSet set;
  Diagnostics d;
  std::string agents = std::string("{\"agents\": [{\"id\": \"home-1\", \"secret\": \"") +
                       kSha512 + "\", \"group\": \"residential\"}, " +
                       R"({"id": "home-2", "secret": "plain", "group": "residential"}, )" +
                       R"({"id": "home-3", "secret": ")" + kSha512 + R"(", "group": "a.b"}, 7]})";
  REQUIRE_MESSAGE(apply_store_agents(agents, set, d), all_messages(d));
  CHECK(d.errors.empty());
  REQUIRE(set.agents.size() == 1);
  CHECK(set.agents[0].id == "home-1");
  CHECK(set.agents[0].enabled);
  CHECK_MESSAGE(has_warning(d, {"store (table agents): agent \"home-2\" (agents[1]).secret: not a "
                                "crypt(3) hash", "this row is skipped, the other agents serve"}),
                all_messages(d));
  CHECK(all_messages(d).find("plain") == std::string::npos);
  CHECK(has_warning(d, {"store (table agents): agent \"home-3\" (agents[2]).group", "skipped"}));
  CHECK(has_warning(d, {"store (table agents): agents[3]: must be an object", "skipped"}));

  // Then the users' group check counts the store's agents as members.
  Diagnostics rd;
  std::string users = "{\"users\": [" + user("a", R"("groups": ["residential"])") + "]}";
  REQUIRE(apply_store_records(users, R"({"proxies": []})", R"({"groups": {}})", set, rd));
  CHECK_FALSE(has_warning(rd, {"\"residential\""}));

  // A document that does not parse is refused as a whole.
  Diagnostics broken;
  CHECK_FALSE(apply_store_agents("{\"agents\": 3}", set, broken));
  CHECK(has_error(broken, {"store (table agents)"}));
}

// apply_store_records: the PostgreSQL store's rows go through the same loaders and cross-checks
// as the files, named by table; the store's groups are added to the main config's.
TEST_CASE("store records load like the files, named by their table") {
  ConfigSet set;
  Diagnostics d;
  set.config.groups["eu"] = GroupConfig{};
  std::string users = "{\"users\": [" + user("alice", "\"external_proxy_id\": \"us1\"") + "]}";
  std::string proxies = R"({"proxies": [{"id": "us1", "type": "socks5", "address": "10.0.0.1",
                                         "port": 1080, "group": "us"}]})";
  std::string groups = R"({"groups": {"us": {"policy": "least_conn"}}})";
  REQUIRE_MESSAGE(apply_store_records(users, proxies, groups, set, d), all_messages(d));
  CHECK(set.users.size() == 1);
  CHECK(set.proxies.size() == 1);
  CHECK(set.config.groups.count("eu") == 1);
  CHECK(set.config.groups.at("us").policy == GroupPolicy::least_conn);

}

// One row that does not load must not stop a node or freeze the fleet: it is skipped and
// reported by its key, and the other rows apply.
TEST_CASE("store records: a row that does not load is skipped and named, the rest apply") {
  ConfigSet set;
  Diagnostics d;
  std::string users = "{\"users\": [" + user("alice", "") + ", " +
                      user("bob", "\"external_proxy_id\": \"gone\"") + ", " +
                      user("carol", "\"quota_bytes\": \"lots\"") + ", " +
                      user("dave", "\"external_proxy_id\": \"bad\"") + ", 7]}";
  std::string proxies = R"({"proxies": [{"id": "us1", "type": "socks5", "address": "10.0.0.1",
                                         "port": 1080},
                                        {"id": "bad", "type": "socks9", "address": "10.0.0.2",
                                         "port": 1080}]})";
  REQUIRE_MESSAGE(apply_store_records(users, proxies, R"({"groups": {}})", set, d),
                  all_messages(d));
  REQUIRE(set.users.size() == 1);
  CHECK(set.users[0].username == "alice");
  REQUIRE(set.proxies.size() == 1);
  CHECK(set.proxies[0].id == "us1");
  CHECK(d.errors.empty());
  CHECK_MESSAGE(has_warning(d, {"store (table users)", "\"bob\"", "external_proxy_id", "gone", "this row is skipped"}),
                all_messages(d));
  CHECK_MESSAGE(has_warning(d, {"store (table users)", "\"carol\"", "quota_bytes", "this row is skipped"}), all_messages(d));
  CHECK_MESSAGE(has_warning(d, {"store (table users)", "\"dave\"", "\"bad\"", "this row is skipped"}), all_messages(d));
  CHECK_MESSAGE(has_warning(d, {"store (table users)", "users[4]", "must be an object", "this row is skipped"}),
                all_messages(d));
  CHECK_MESSAGE(has_warning(d, {"store (table upstreams)", "\"bad\"", "type", "this row is skipped"}), all_messages(d));

  // The records as a whole not loading still refuses them: the last snapshot stays.
  Diagnostics broken;
  CHECK_FALSE(apply_store_records("{\"users\": 3}", R"({"proxies": []})", R"({"groups": {}})",
                                  set, broken));
  CHECK_FALSE(broken.errors.empty());
}
