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
  CHECK(has_error(l.diag, {"users.json: users[1].external_proxy_id: \"nope\" names no upstream proxy", "set null to route this user directly"}));
  CHECK(has_warning(l.diag, {"uringproxy.json: groups.asia: no upstream proxy has \"group\": \"asia\""}));
  CHECK(has_warning(l.diag, {"users.json: users[1].groups[1] (and 1 more users): no upstream proxy has \"group\": \"mars\""}));
  CHECK(!has_warning(l.diag, {"\"us-east\""}));
}

TEST_CASE("config set: an upstream reference without any proxies file") {
  TempDir dir;
  std::string cfg = dir.write("uringproxy.json", config_with(""));
  dir.write("users.json", "{\"users\": [" + user("a", R"("external_proxy_id": "us1")") + "]}");
  Loaded l = load(cfg);
  CHECK(has_error(l.diag, {"users[0].external_proxy_id: \"us1\" names no upstream proxy: there is no proxies_file in"}));
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
  CHECK(has_error(l.diag, {"px.json: proxies[0].port: 70000 is out of range"}));
  CHECK(l.diag.errors.size() == 4);
}
