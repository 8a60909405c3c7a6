// parse_config (src/config/config_loader.cpp): every field of uringproxy.json, happy path and
// the message an operator gets when it is wrong.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include "config_test_util.h"
#include "uringproxy/config.h"

using namespace up;
using up::test::all_messages;
using up::test::has_error;
using up::test::has_warning;

namespace {

const char* kPath = "/etc/uringproxy/uringproxy.json";

// A valid config with `extra` spliced in as further top-level members.
std::string with(const std::string& extra) {
  std::string s = R"({
  "listeners": [{"name": "socks", "protocol": "socks5", "listen": "127.0.0.1:1080"}],
  "users_file": "users.json")";
  if (!extra.empty()) s += ",\n  " + extra;
  return s + "\n}\n";
}

struct Parsed {
  Config config;
  Diagnostics diag;
  bool ok = false;
};

Parsed parse(const std::string& text, const char* path = kPath) {
  Parsed p;
  p.ok = parse_config(text, path, p.config, p.diag);
  INFO(all_messages(p.diag));
  CHECK(p.ok == p.diag.ok());
  return p;
}

uint16_t port_of(const SocketAddress& a) {
  if (a.addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a.addr).sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6&>(a.addr).sin6_port);
}

}  // namespace

TEST_CASE("config parse: the documented example is accepted without warnings") {
  const char* text = R"({
  "workers": 0,
  "listeners": [
    {"name": "socks", "protocol": "socks5", "listen": "127.0.0.1:1080"},
    {"name": "http",  "protocol": "http",   "listen": "127.0.0.1:8080"},
    {"name": "https", "protocol": "http",   "listen": "127.0.0.1:8443",
     "tls": {"cert": "certs/server.pem", "key": "certs/server.key"}},
    {"name": "vless", "protocol": "vless",  "listen": "127.0.0.1:8444",
     "tls": {"cert": "certs/server.pem", "key": "certs/server.key"}}
  ],
  "auth": "required",
  "users_file": "users.json",
  "proxies_file": "external_proxy.json",
  "routing": {"on_failure": "reject", "group_fallback": "default"},
  "upstream": {"connect_timeout_ms": 5000, "attempts": 3, "backoff_ms": 1000},
  "groups": {"us-east": {"policy": "round_robin", "on_failure": "reject"}},
  "health_check": {"interval_ms": 10000, "timeout_ms": 3000},
  "dns": {"servers": [], "cache_max_ttl_s": 300},
  "acl": {"deny_private": true, "allow": [], "deny": [], "deny_ports": []},
  "limits": {"handshake_timeout_ms": 10000, "idle_timeout_ms": 300000,
             "max_connections_per_user": 0, "bandwidth_bps_per_user": 0},
  "control": {"socket": "run/control.sock"},
  "metrics": {"listen": "127.0.0.1:9100"},
  "access_log": "stderr",
  "shutdown_grace_ms": 10000
})";
  Parsed p = parse(text);
  REQUIRE(p.ok);
  const Config& c = p.config;
  CHECK(c.path == kPath);
  CHECK(c.dir == "/etc/uringproxy");
  REQUIRE(c.listeners.size() == 4);
  CHECK(c.listeners[0].name == "socks");
  CHECK(c.listeners[0].protocol == Protocol::socks5);
  CHECK(c.listeners[0].listen.text == "127.0.0.1:1080");
  CHECK(port_of(c.listeners[0].listen) == 1080);
  CHECK(!c.listeners[0].tls);
  CHECK(c.listeners[1].protocol == Protocol::http);
  REQUIRE(c.listeners[2].tls);
  CHECK(c.listeners[2].tls->cert == "/etc/uringproxy/certs/server.pem");
  CHECK(c.listeners[2].tls->key == "/etc/uringproxy/certs/server.key");
  CHECK(c.listeners[3].protocol == Protocol::vless);
  CHECK(c.auth_required);
  CHECK(c.users_file == "/etc/uringproxy/users.json");
  CHECK(c.proxies_file == "/etc/uringproxy/external_proxy.json");
  CHECK(c.routing.on_failure.kind == OnFailure::Kind::reject);
  CHECK(c.routing.group_fallback_default);
  CHECK(c.groups.at("us-east").policy == GroupPolicy::round_robin);
  CHECK(c.groups.at("us-east").on_failure.kind == OnFailure::Kind::reject);
  CHECK(c.control_socket == "/etc/uringproxy/run/control.sock");
  REQUIRE(c.metrics_listen);
  CHECK(port_of(*c.metrics_listen) == 9100);
  CHECK(c.metrics_listen_written);  // written out: failing to bind it is fatal
  CHECK(c.access_log == "stderr");

  CHECK_FALSE(has_warning(p.diag, {"listeners[2].tls: accepted"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"listeners[3].protocol: accepted"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"groups: accepted, but upstream groups"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"health_check: accepted"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"metrics.listen: accepted"}));  // landed: no warning
  // Empty lists, zero limits and the default control socket are not "set".
  CHECK(!up::test::mentions(p.diag, "acl.allow"));
  CHECK(!up::test::mentions(p.diag, "limits.max_connections_per_user"));
  CHECK(!up::test::mentions(p.diag, "control.socket"));
}

TEST_CASE("config parse: defaults when optional sections are absent") {
  Parsed p = parse(with(""));
  REQUIRE(p.ok);
  const Config& c = p.config;
  CHECK(c.workers == 0);
  CHECK(c.auth_required);
  CHECK(c.proxies_file.empty());
  CHECK(c.routing.on_failure.kind == OnFailure::Kind::reject);
  CHECK(c.upstream.connect_timeout_ms == 5000);
  CHECK(c.upstream.attempts == 3);
  CHECK(c.health_check.interval_ms == 10000);
  CHECK(c.dns.servers.empty());
  CHECK(c.dns.cache_max_ttl_s == 300);
  CHECK(c.acl.deny_private);
  CHECK(c.limits.handshake_timeout_ms == 10000);
  CHECK(c.limits.idle_timeout_ms == 300000);
  CHECK(c.control_socket == "/etc/uringproxy/run/control.sock");
  // Not node_exporter's 9100: the default is outside Prometheus' port allocations, and only
  // warns when taken (not written).
  REQUIRE(c.metrics_listen);
  CHECK(c.metrics_listen->text == "127.0.0.1:9089");
  CHECK(!c.metrics_listen_written);
  CHECK(c.metrics_max_user_series == 1000);
  CHECK(c.limits.max_config_file_bytes == 64u << 20);
  CHECK(c.access_log == "stderr");
  CHECK(c.shutdown_grace_ms == 10000);
  CHECK(c.run_as_user.empty());
}

TEST_CASE("config parse: comments and trailing commas are allowed") {
  Parsed p = parse(R"(// leading comment
{
  /* block comment */
  "listeners": [
    {"name": "a", "protocol": "socks5", "listen": "127.0.0.1:1080",}, // trailing comma
  ],
  "users_file": "users.json", // another
})");
  CHECK(p.ok);
}

TEST_CASE("config parse: syntax errors carry line and column") {
  Parsed p = parse("{\n  \"workers\": 1\n  \"auth\": \"none\"\n}", "cfg/uringproxy.json");
  CHECK(!p.ok);
  REQUIRE(p.diag.errors.size() == 1);
  CHECK(p.diag.errors[0].rfind("cfg/uringproxy.json:3:3: invalid JSON: Missing a comma", 0) == 0);

  Parsed empty = parse("", "x.json");
  CHECK(!empty.ok);
  CHECK(has_error(empty.diag, {"x.json:1:1: invalid JSON"}));

  Parsed top = parse("[1]", "x.json");
  CHECK(has_error(top.diag, {"x.json: the top level must be an object"}));
}

TEST_CASE("config parse: unknown fields are errors with a suggestion") {
  Parsed p = parse(with(R"("workrs": 2, "zzzzzzzz": 1, "limits": {"idle_timout_ms": 5})"));
  CHECK(!p.ok);
  CHECK(has_error(p.diag, {kPath, ": workrs: unknown field (did you mean \"workers\"?)"}));
  CHECK(has_error(p.diag, {"limits.idle_timout_ms: unknown field (did you mean \"idle_timeout_ms\"?)"}));
  CHECK(has_error(p.diag, {"zzzzzzzz: unknown field; remove it (fields here: workers, listeners"}));

  Parsed l = parse(R"({"listeners": [{"name": "a", "protocl": "socks5", "listen": "127.0.0.1:1"}],
                      "auth": "none"})");
  CHECK(has_error(l.diag, {"listeners[0].protocl: unknown field (did you mean \"protocol\"?)"}));
}

TEST_CASE("config parse: every problem is reported, not just the first") {
  Parsed p = parse(R"({
  "workers": 5000,
  "listeners": [
    {"name": "a", "protocol": "socks5", "listen": "127.0.0.1:1080"},
    {"name": "b", "protocol": "gopher", "listen": "127.0.0.1:99999"}
  ],
  "auth": "maybe",
  "users_file": "users.json",
  "shutdown_grace_ms": "soon"
})");
  CHECK(!p.ok);
  CHECK(p.diag.errors.size() == 5);
  CHECK(has_error(p.diag, {"workers: 5000 is out of range (0..1024)"}));
  CHECK(has_error(p.diag, {"listeners[1].protocol: \"gopher\" is not a protocol"}));
  CHECK(has_error(p.diag, {kPath, ": listeners[1].listen: \"127.0.0.1:99999\" is not ip:port (e.g. \"127.0.0.1:1080\")"}));
  CHECK(has_error(p.diag, {"auth: \"maybe\" is not \"required\" or \"none\""}));
  CHECK(has_error(p.diag, {"shutdown_grace_ms: must be an integer 0..86400000, not a string"}));
}

TEST_CASE("config parse: workers") {
  CHECK(parse(with(R"("workers": 1024)")).config.workers == 1024);
  CHECK(has_error(parse(with(R"("workers": -1)")).diag, {"workers: -1 is out of range (0..1024)"}));
  CHECK(has_error(parse(with(R"("workers": 1.5)")).diag, {"workers: must be a whole number"}));
  CHECK(has_error(parse(with(R"("workers": 1e30)")).diag, {"workers: must be a whole number"}));
  CHECK(has_error(parse(with(R"("workers": true)")).diag, {"workers: must be an integer 0..1024, not a boolean"}));
}

TEST_CASE("config parse: listeners") {
  SUBCASE("required and non-empty") {
    CHECK(has_error(parse(R"({"auth": "none"})").diag, {"listeners: is required"}));
    CHECK(has_error(parse(R"({"auth": "none", "listeners": []})").diag, {"listeners: is empty; add at least one listener"}));
    CHECK(has_error(parse(R"({"auth": "none", "listeners": [5]})").diag, {"listeners[0]: must be an object"}));
  }
  SUBCASE("names unique and non-empty") {
    Parsed p = parse(R"({"auth": "none", "listeners": [
      {"name": "a", "protocol": "socks5", "listen": "127.0.0.1:1"},
      {"name": "a", "protocol": "socks5", "listen": "127.0.0.1:2"},
      {"name": "", "protocol": "socks5", "listen": "127.0.0.1:3"},
      {"protocol": "socks5", "listen": "127.0.0.1:4"}]})");
    CHECK(has_error(p.diag, {"listeners[1].name: \"a\" is already used by another listener"}));
    CHECK(has_error(p.diag, {"listeners[2].name: must not be empty"}));
    CHECK(has_error(p.diag, {"listeners[3].name: is required"}));
  }
  SUBCASE("listen addresses") {
    Parsed p = parse(R"({"auth": "none", "listeners": [
      {"name": "a", "protocol": "socks5", "listen": "[::1]:1080"},
      {"name": "b", "protocol": "http", "listen": "[::1]:1080"},
      {"name": "c", "protocol": "http", "listen": "localhost:80"},
      {"name": "d", "protocol": "http", "listen": "[::1]:0"},
      {"name": "e", "protocol": "http", "listen": "0.0.0.0:8080"},
      {"name": "f", "protocol": "http", "listen": "0.0.0.0:8080"}]})");
    CHECK(has_error(p.diag, {"listeners[1].listen: \"[::1]:1080\" is already used by listeners[0]"}));
    CHECK(has_error(p.diag, {"listeners[2].listen: \"localhost:80\" is not ip:port"}));
    CHECK(has_error(p.diag, {"listeners[3].listen: \"[::1]:0\" is not ip:port (e.g. \"[::1]:1080\")"}));
    CHECK(has_error(p.diag, {"listeners[5].listen: \"0.0.0.0:8080\" is already used by listeners[4]"}));
    CHECK(p.diag.errors.size() == 4);
  }
  SUBCASE("tls needs cert and key; paths resolve against the config's directory") {
    Parsed p = parse(R"({"auth": "none", "listeners": [
      {"name": "a", "protocol": "http", "listen": "127.0.0.1:1", "tls": {"cert": "c.pem"}},
      {"name": "b", "protocol": "http", "listen": "127.0.0.1:2", "tls": {"cert": "/abs/c.pem", "key": "../k.pem"}},
      {"name": "c", "protocol": "http", "listen": "127.0.0.1:3", "tls": "yes"}]})");
    CHECK(has_error(p.diag, {"listeners[0].tls.key: is required"}));
    CHECK(has_error(p.diag, {"listeners[2].tls: must be an object"}));
    REQUIRE(p.config.listeners.size() == 3);
    REQUIRE(p.config.listeners[1].tls);
    CHECK(p.config.listeners[1].tls->cert == "/abs/c.pem");
    CHECK(p.config.listeners[1].tls->key == "/etc/k.pem");
  }
  SUBCASE("vless requires tls") {
    Parsed p = parse(R"({"auth": "none", "listeners": [
      {"name": "v", "protocol": "vless", "listen": "127.0.0.1:1"}]})");
    CHECK(has_error(p.diag, {"listeners[0].protocol: \"vless\" needs TLS; add \"tls\""}));
  }
}

TEST_CASE("config parse: auth and users_file") {
  CHECK(has_error(parse(R"({"listeners": [{"name": "a", "protocol": "socks5", "listen": "127.0.0.1:1"}]})").diag,
                  {"users_file: is required when auth is \"required\" (e.g. \"users.json\")"}));
  Parsed none = parse(R"({"auth": "none", "listeners": [{"name": "a", "protocol": "socks5", "listen": "127.0.0.1:1"}]})");
  CHECK(none.ok);
  CHECK(!none.config.auth_required);
  CHECK(none.config.users_file.empty());
  CHECK(has_error(parse(with(R"("auth": true)")).diag, {"auth: must be a string, not a boolean"}));
}

TEST_CASE("config parse: relative paths resolve against the config's directory") {
  SUBCASE("absolute config path") {
    Parsed p = parse(with(R"("proxies_file": "sub/../px.json", "access_log": "log/access.log",
                              "control": {"socket": "/run/up.sock"})"),
                     "/srv/proxy/conf/uringproxy.json");
    REQUIRE(p.ok);
    CHECK(p.config.users_file == "/srv/proxy/conf/users.json");
    CHECK(p.config.proxies_file == "/srv/proxy/conf/px.json");
    CHECK(p.config.access_log == "/srv/proxy/conf/log/access.log");
    CHECK(p.config.control_socket == "/run/up.sock");
    CHECK_FALSE(has_warning(p.diag, {"control.socket: accepted, but the control socket"}));  // landed: no warning
  }
  SUBCASE("relative config path is made absolute against the working directory") {
    char buf[4096];
    REQUIRE(getcwd(buf, sizeof buf) != nullptr);
    Parsed p = parse(with(""), "conf/uringproxy.json");
    REQUIRE(p.ok);
    std::string cwd = buf;
    CHECK(p.config.path == (cwd == "/" ? "" : cwd) + "/conf/uringproxy.json");
    CHECK(p.config.users_file == (cwd == "/" ? "" : cwd) + "/conf/users.json");
  }
}

TEST_CASE("config parse: routing") {
  Parsed p = parse(with(R"("routing": {"on_failure": "direct", "group_fallback": "reject"})"));
  REQUIRE(p.ok);
  CHECK(p.config.routing.on_failure.kind == OnFailure::Kind::direct);
  CHECK(!p.config.routing.group_fallback_default);
  Parsed up = parse(with(R"("routing": {"on_failure": "proxy-eu"})"));
  REQUIRE(up.ok);
  CHECK(up.config.routing.on_failure.kind == OnFailure::Kind::upstream);
  CHECK(up.config.routing.on_failure.upstream_id == "proxy-eu");
  Parsed bad = parse(with(R"("routing": {"on_failure": "", "group_fallback": "maybe", "x": 1})"));
  CHECK(has_error(bad.diag, {"routing.on_failure: \"\" is not \"reject\", \"direct\" or the id of an upstream proxy"}));
  CHECK(has_error(bad.diag, {"routing.group_fallback: \"maybe\" is not \"default\" or \"reject\""}));
  CHECK(has_error(bad.diag, {"routing.x: unknown field"}));
  CHECK(has_error(parse(with(R"("routing": [])")).diag, {"routing: must be an object {...}, not an array"}));
}

TEST_CASE("config parse: upstream") {
  Parsed p = parse(with(R"("upstream": {"connect_timeout_ms": 250, "attempts": 1, "backoff_ms": 0})"));
  REQUIRE(p.ok);
  CHECK(p.config.upstream.connect_timeout_ms == 250);
  CHECK(p.config.upstream.attempts == 1);
  CHECK(p.config.upstream.backoff_ms == 0);
  Parsed bad = parse(with(R"("upstream": {"connect_timeout_ms": 0, "attempts": 0})"));
  CHECK(has_error(bad.diag, {"upstream.connect_timeout_ms: 0 is out of range (1..86400000)"}));
  CHECK(has_error(bad.diag, {"upstream.attempts: 0 is out of range (1..100)"}));
}

TEST_CASE("config parse: groups") {
  Parsed p = parse(with(R"("groups": {"eu": {"policy": "least_conn", "on_failure": "proxy-b"},
                                       "us": {"policy": "hash_user"}, "asia": {}})"));
  REQUIRE(p.ok);
  CHECK(p.config.groups.size() == 3);
  CHECK(p.config.groups.at("eu").policy == GroupPolicy::least_conn);
  CHECK(p.config.groups.at("eu").on_failure.upstream_id == "proxy-b");
  CHECK(p.config.groups.at("us").policy == GroupPolicy::hash_user);
  CHECK(p.config.groups.at("asia").policy == GroupPolicy::round_robin);
  CHECK(p.config.groups.at("asia").on_failure.kind == OnFailure::Kind::unset);
  Parsed bad = parse(with(R"("groups": {"eu": {"policy": "random"}, "a b": {}, "a.b": {}, "x": 3})"));
  CHECK(has_error(bad.diag, {"groups.eu.policy: \"random\" is not a policy; use \"round_robin\""}));
  CHECK(has_error(bad.diag, {"groups: \"a b\" is not a group name"}));
  CHECK(has_error(bad.diag, {"groups: \"a.b\" is not a group name (no '.', ':' or whitespace"}));
  CHECK(has_error(bad.diag, {"groups.x: must be an object"}));
  CHECK(!up::test::mentions(parse(with(R"("groups": {})")).diag, "groups"));
}

TEST_CASE("config parse: health_check") {
  Parsed p = parse(with(R"("health_check": {"interval_ms": 5000, "timeout_ms": 100, "target": "example.com:443"})"));
  REQUIRE(p.ok);
  CHECK(p.config.health_check.interval_ms == 5000);
  CHECK(p.config.health_check.timeout_ms == 100);
  CHECK(p.config.health_check.target == "example.com:443");
  CHECK_FALSE(has_warning(p.diag, {"health_check: accepted, but upstream health checks are not implemented yet"}));  // landed: no warning
  CHECK(parse(with(R"("health_check": {"target": "[2001:db8::1]:80"})")).ok);
  Parsed bad = parse(with(R"("health_check": {"target": "example.com", "interval_ms": 1})"));
  CHECK(has_error(bad.diag, {"health_check.target: \"example.com\" is not host:port"}));
  CHECK(has_error(bad.diag, {"health_check.interval_ms: 1 is out of range"}));
}

TEST_CASE("config parse: dns") {
  Parsed p = parse(with(R"("dns": {"servers": ["127.0.0.1:5353", "1.1.1.1", "[::1]:53", "2001:db8::1"], "cache_max_ttl_s": 0})"));
  REQUIRE(p.ok);
  REQUIRE(p.config.dns.servers.size() == 4);
  CHECK(port_of(p.config.dns.servers[0]) == 5353);
  CHECK(port_of(p.config.dns.servers[1]) == 53);
  CHECK(p.config.dns.servers[1].text == "1.1.1.1");
  CHECK(p.config.dns.servers[3].addr.ss_family == AF_INET6);
  CHECK(port_of(p.config.dns.servers[3]) == 53);
  CHECK(p.config.dns.cache_max_ttl_s == 0);
  Parsed bad = parse(with(R"("dns": {"servers": ["dns.google", 53, "1.1.1.1:0"]})"));
  CHECK(has_error(bad.diag, {"dns.servers[0]: \"dns.google\" is not an IP address"}));
  CHECK(has_error(bad.diag, {"dns.servers[1]: must be a string"}));
  CHECK(has_error(bad.diag, {"dns.servers[2]: \"1.1.1.1:0\" is not an IP address"}));
}

TEST_CASE("config parse: acl") {
  Parsed p = parse(with(R"("acl": {"deny_private": false, "allow": ["127.0.0.0/8", "example.com"],
                                    "deny": ["*.ads.example", "::1", "2001:db8::/32"], "deny_ports": [25, 465]})"));
  REQUIRE(p.ok);
  CHECK(!p.config.acl.deny_private);
  CHECK(p.config.acl.allow == std::vector<std::string>{"127.0.0.0/8", "example.com"});
  CHECK(p.config.acl.deny.size() == 3);
  CHECK(p.config.acl.deny_ports == std::vector<uint16_t>{25, 465});
  CHECK_FALSE(has_warning(p.diag, {"acl.allow: accepted, but ACL allow lists are not implemented yet; only acl.deny_private is enforced"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"acl.deny: accepted"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"acl.deny_ports: accepted"}));  // landed: no warning
  Parsed bad = parse(with(R"("acl": {"deny_private": "yes", "allow": ["10.0.0.0/33", "exa mple"], "deny_ports": [0, 70000, "25"]})"));
  CHECK(has_error(bad.diag, {"acl.deny_private: must be true or false, not a string"}));
  CHECK(has_error(bad.diag, {"acl.allow[0]: \"10.0.0.0/33\": prefix length 33 is out of range (0..32)"}));
  CHECK(has_error(bad.diag, {"acl.allow[1]: \"exa mple\" is not a CIDR, a host name or \"*.suffix\""}));
  CHECK(has_error(bad.diag, {"acl.deny_ports[0]: must be a port number 1..65535"}));
  CHECK(has_error(bad.diag, {"acl.deny_ports[1]:"}));
  CHECK(has_error(bad.diag, {"acl.deny_ports[2]:"}));
}

TEST_CASE("config parse: limits") {
  Parsed p = parse(with(R"("limits": {"handshake_timeout_ms": 2000, "idle_timeout_ms": 60000,
    "max_connections_per_user": 10, "bandwidth_bps_per_user": 100000000000, "max_connections": 5000})"));
  REQUIRE(p.ok);
  CHECK(p.config.limits.handshake_timeout_ms == 2000);
  CHECK(p.config.limits.idle_timeout_ms == 60000);
  CHECK(p.config.limits.max_connections_per_user == 10);
  CHECK(p.config.limits.bandwidth_bps_per_user == 100000000000ull);
  CHECK(p.config.limits.max_connections == 5000);
  CHECK_FALSE(has_warning(p.diag, {"limits.max_connections_per_user: accepted, but per-user connection limits"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {"limits.bandwidth_bps_per_user: accepted"}));  // landed: no warning
  Parsed bad = parse(with(R"("limits": {"max_connections": 4294967296, "handshake_timeout_ms": 0, "idle_timeout_ms": -5})"));
  CHECK(has_error(bad.diag, {"limits.max_connections: 4294967296 is out of range (0..4294967295)"}));
  CHECK(has_error(bad.diag, {"limits.handshake_timeout_ms: 0 is out of range"}));
  CHECK(has_error(bad.diag, {"limits.idle_timeout_ms: -5 is out of range"}));
}

TEST_CASE("config parse: metrics") {
  Parsed off = parse(with(R"("metrics": {"listen": "", "max_user_series": 50})"));
  REQUIRE(off.ok);
  CHECK(!off.config.metrics_listen);
  CHECK(off.config.metrics_max_user_series == 50);
  CHECK(!up::test::mentions(off.diag, "metrics"));
  Parsed on = parse(with(R"("metrics": {"listen": "[::1]:9200"})"));
  REQUIRE(on.config.metrics_listen);
  CHECK(port_of(*on.config.metrics_listen) == 9200);
  CHECK(on.config.metrics_listen_written);
  // A metrics block without "listen" keeps the default address, still not written.
  Parsed series = parse(with(R"("metrics": {"max_user_series": 5})"));
  REQUIRE(series.config.metrics_listen);
  CHECK(series.config.metrics_listen->text == "127.0.0.1:9089");
  CHECK(!series.config.metrics_listen_written);
  CHECK_FALSE(has_warning(on.diag, {"metrics.listen: accepted, but the metrics endpoint is not implemented yet"}));  // landed: no warning
  CHECK(has_error(parse(with(R"("metrics": {"listen": "9100"})")).diag,
                  {"metrics.listen: \"9100\" is not ip:port (e.g. \"127.0.0.1:9089\"); use \"\" to disable"}));
  CHECK(has_error(parse(with(R"("metrics": {"max_user_series": 2000000})")).diag, {"metrics.max_user_series"}));
}

TEST_CASE("config parse: access_log") {
  CHECK(parse(with(R"("access_log": "off")")).config.access_log == "off");
  CHECK(parse(with(R"("access_log": "stderr")")).config.access_log == "stderr");
  CHECK(parse(with(R"("access_log": "/var/log/up.log")")).config.access_log == "/var/log/up.log");
  CHECK(has_error(parse(with(R"("access_log": "")")).diag, {"access_log: must be \"stderr\", \"off\" or a file path"}));
  CHECK(has_error(parse(with(R"("access_log": 1)")).diag, {"access_log: must be a string"}));
}

TEST_CASE("config parse: user and group") {
  Parsed p = parse(with(R"("user": "proxy", "group": "nogroup")"));
  REQUIRE(p.ok);
  CHECK(p.config.run_as_user == "proxy");
  CHECK(p.config.run_as_group == "nogroup");
  CHECK_FALSE(has_warning(p.diag, {": user: accepted, but dropping privileges is not implemented yet"}));  // landed: no warning
  CHECK_FALSE(has_warning(p.diag, {": group: accepted"}));  // landed: no warning
  CHECK(has_error(parse(with(R"("user": "")")).diag, {": user: must not be empty"}));
  CHECK(has_error(parse(with(R"("group": "a b")")).diag, {": group: \"a b\" is not a group name"}));
}

TEST_CASE("config parse: duplicate keys are reported") {
  Parsed p = parse(with(R"("workers": 1, "workers": 2)"));
  CHECK(has_error(p.diag, {"workers: appears more than once in this object; keep one"}));
}

TEST_CASE("config parse: hostile keys are quoted and capped in messages") {
  std::string longkey(500, 'k');
  Parsed p = parse(with("\"" + longkey + "\": 1, \"a\\nb\": 2"));
  CHECK(p.diag.errors.size() == 2);
  for (const auto& e : p.diag.errors) CHECK(e.size() < 400);
  CHECK(has_error(p.diag, {"\"a\\u000ab\": unknown field"}));
}

TEST_CASE("config parse: store defaults to json with a 1 s flush") {
  Parsed p = parse(with(""));
  REQUIRE(p.ok);
  CHECK(p.config.store.type == StoreConfig::Type::json);
  CHECK(p.config.store.flush_interval_ms == 1000);
  Parsed q = parse(with(R"("store": {"type": "json", "flush_interval_ms": 250})"));
  REQUIRE(q.ok);
  CHECK(q.config.store.flush_interval_ms == 250);
}

TEST_CASE("config parse: store fields are checked") {
  CHECK(has_error(parse(with(R"("store": {"type": "mysql"})")).diag,
                  {"store.type: \"mysql\" is not \"json\" or \"postgres\""}));
  CHECK(has_error(parse(with(R"("store": {"flush_interval_ms": 0})")).diag,
                  {"store.flush_interval_ms"}));
  CHECK(has_error(parse(with(R"("store": {"type": "json", "dsn": "host=db"})")).diag,
                  {"store.dsn: is read only with \"type\": \"postgres\""}));
  Parsed p = parse(with(R"("store": {"type": "postgres"})"));
  CHECK(has_error(p.diag, {"store.dsn: is required"}));
  CHECK(has_error(p.diag, {"store.node: is required"}));
  CHECK(has_error(parse(with(R"("store": {"type": "postgres", "dsn": "host=db", "node": "a b"})"))
                      .diag,
                  {"store.node: \"a b\" contains whitespace"}));
}

TEST_CASE("config parse: a postgres store parses its dsn") {
  Parsed p = parse(with(R"("store": {"type": "postgres", "node": "edge-1",
      "dsn": "host=db.internal dbname=uringproxy user=uringproxy"})"));
  CHECK(p.ok);
  CHECK(p.config.store.type == StoreConfig::Type::postgres);
  CHECK(p.config.store.node == "edge-1");
  CHECK(p.config.store.dsn_host == "db.internal");
  Parsed uri = parse(with(R"("store": {"type": "postgres", "node": "n",
      "dsn": "postgresql://u@db2.internal:5433/uringproxy"})"));
  CHECK(uri.ok);
  CHECK(uri.config.store.dsn_host == "db2.internal");
}

TEST_CASE("config parse: a dsn that does not parse is named, its password never shown") {
  for (const char* dsn : {"host=db password=hunter2secret dbname", "host='db password=hunter2secret",
                          "postgresql://u:hunter2secret@db/x?bogus_option=1",
                          "hunter2secret", "host=db passwrd=hunter2secret"}) {
    Parsed p = parse(with(std::string(R"("store": {"type": "postgres", "node": "n", "dsn": ")") +
                          dsn + "\"}"));
    INFO(dsn);
    CHECK(has_error(p.diag, {"store.dsn: does not parse as a libpq connection string"}));
    CHECK(all_messages(p.diag).find("hunter2") == std::string::npos);
  }
  // A password in both places is ambiguous.
  Parsed both = parse(with(R"("store": {"type": "postgres", "node": "n",
      "dsn": "host=db password=hunter2secret", "password_file": "db.secret"})"));
  CHECK(has_error(both.diag, {"store.password_file: is given and the dsn has a password too"}));
  CHECK(all_messages(both.diag).find("hunter2") == std::string::npos);
}

TEST_CASE("config: an agent listener needs TLS") {
  Parsed plain = parse(R"({"auth": "none", "listeners": [
    {"name": "agents", "protocol": "agent", "listen": "127.0.0.1:7443"}]})");
  CHECK(!plain.ok);
  CHECK(plain.diag.errors.size() == 1);
  CHECK(has_error(plain.diag, {kPath, ": listeners[0].protocol: \"agent\" needs TLS (agents send their secret on connect)"}));
  Parsed tls = parse(R"({"auth": "none", "listeners": [
    {"name": "agents", "protocol": "agent", "listen": "127.0.0.1:7443",
     "tls": {"cert": "c.pem", "key": "k.pem"}}]})");
  CHECK(tls.ok);
  CHECK(tls.diag.errors.empty());
  REQUIRE(tls.config.listeners.size() == 1);
  CHECK(tls.config.listeners[0].protocol == Protocol::agent);
}
