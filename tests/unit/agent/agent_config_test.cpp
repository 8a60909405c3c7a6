// Tests for src/agent/agent_config.cpp: agent.json and its secret file, with every error naming
// the file, the field and the fix.
#include "agent/agent_config.h"

#include <doctest/doctest.h>

#include "../config/config_test_util.h"

using namespace up;
using up::test::all_messages;
using up::test::has_error;
using up::test::has_warning;
using up::test::TempDir;

namespace {

struct Parsed {
  AgentConfig cfg;
  Diagnostics diag;
  bool ok = false;
};

Parsed parse(const std::string& text) {
  Parsed p;
  p.ok = parse_agent_config(text, "/etc/up/agent.json", p.cfg, p.diag);
  INFO(all_messages(p.diag));
  CHECK(p.ok == p.diag.ok());
  return p;
}

const char* kMinimal = R"({"gateway": "gw.example.com:7443", "id": "home-1",
                           "secret_file": "agent.secret"})";

}  // namespace

TEST_CASE("agent config: minimal file and its defaults") {
  Parsed p = parse(kMinimal);
  REQUIRE_MESSAGE(p.ok, all_messages(p.diag));
  CHECK(p.cfg.gateway_host == "gw.example.com");
  CHECK(p.cfg.gateway_port == 7443);
  CHECK(p.cfg.id == "home-1");
  CHECK(p.cfg.secret_file == "/etc/up/agent.secret");
  CHECK(p.cfg.tls.server_name == "gw.example.com");  // SNI and name check default to the host
  CHECK(p.cfg.tls.verify);
  CHECK(p.cfg.tls.ca_file.empty());
  CHECK(p.cfg.tls.reverse_resumption);  // reverse links on resumed TLS 1.2 (agent_main.cpp)
  CHECK(p.cfg.idle_connections == 4);
  CHECK(p.cfg.acl.deny_private);  // a gateway cannot reach the agent's LAN by default
  CHECK_FALSE(p.cfg.source_address);
  CHECK(p.diag.warnings.empty());
}

TEST_CASE("agent config: every field read") {
  Parsed p = parse(R"({
    "gateway": "[2001:db8::1]:7443", "id": "home_2.x", "secret_file": "/run/s",
    "tls": {"ca_file": "certs/ca.pem", "server_name": "gw.test", "verify": true,
            "reverse_resumption": false},
    "idle_connections": 16, "workers": 2, "source_address": "127.0.0.2",
    "connect_timeout_ms": 3000, "shutdown_grace_ms": 0,
    "acl": {"deny_private": false, "deny_ports": [25]},
    "dns": {"servers": ["127.0.0.1:5353"], "cache_max_ttl_s": 60}})");
  REQUIRE_MESSAGE(p.ok, all_messages(p.diag));
  CHECK(p.cfg.gateway_host == "2001:db8::1");
  CHECK(p.cfg.gateway_port == 7443);
  CHECK(p.cfg.secret_file == "/run/s");
  CHECK(p.cfg.tls.ca_file == "/etc/up/certs/ca.pem");
  CHECK(p.cfg.tls.server_name == "gw.test");
  CHECK_FALSE(p.cfg.tls.reverse_resumption);
  CHECK(p.cfg.idle_connections == 16);
  CHECK(p.cfg.workers == 2);
  REQUIRE(p.cfg.source_address);
  CHECK(p.cfg.source_address->addr.ss_family == AF_INET);
  CHECK(p.cfg.connect_timeout_ms == 3000);
  CHECK(p.cfg.shutdown_grace_ms == 0);
  CHECK_FALSE(p.cfg.acl.deny_private);
  CHECK(p.cfg.acl.deny_ports == std::vector<uint16_t>{25});
  REQUIRE(p.cfg.dns.servers.size() == 1);
  CHECK(p.cfg.dns.cache_max_ttl_s == 60);

  Config e = egress_config(p.cfg);
  CHECK_FALSE(e.acl.deny_private);
  CHECK(e.source_address);
  CHECK(e.upstream.connect_timeout_ms == 3000);
  CHECK_FALSE(e.auth_required);
  CHECK(e.listeners.empty());
}

TEST_CASE("agent config: v6 source address") {
  Parsed p = parse(R"({"gateway": "gw:1", "id": "a", "secret_file": "s", "source_address": "::1"})");
  REQUIRE_MESSAGE(p.ok, all_messages(p.diag));
  CHECK(p.cfg.source_address->addr.ss_family == AF_INET6);
}

TEST_CASE("agent config: required fields named") {
  Parsed p = parse("{}");
  CHECK_FALSE(p.ok);
  CHECK(has_error(p.diag, {"agent.json: gateway: is required"}));
  CHECK(has_error(p.diag, {"agent.json: id: is required"}));
  CHECK(has_error(p.diag, {"agent.json: secret_file: is required"}));
}

TEST_CASE("agent config: bad values named with their fix") {
  Parsed p = parse(R"({"gateway": "no-port", "id": "bad id", "secret_file": "s",
    "tls": {"server_name": "bad name!", "colour": 1}, "idle_connections": 0,
    "source_address": "127.0.0.1:80", "acl": {"deny_ports": [0]}, "dns": {"servers": ["x"]},
    "idle_conections": 3})");
  CHECK_FALSE(p.ok);
  CHECK(has_error(p.diag, {"gateway: \"no-port\" is not \"host:port\""}));
  CHECK(has_error(p.diag, {"id: \"bad id\" is not an agent id"}));
  CHECK(has_error(p.diag, {"tls.server_name: \"bad name!\" is not a host name"}));
  CHECK(has_error(p.diag, {"tls.colour"}));
  CHECK(has_error(p.diag, {"idle_connections"}));
  CHECK(has_error(p.diag, {"source_address: \"127.0.0.1:80\" is not an IP address", "no port"}));
  CHECK(has_error(p.diag, {"acl.deny_ports[0]"}));
  CHECK(has_error(p.diag, {"dns.servers[0]"}));
  CHECK(has_error(p.diag, {"idle_conections", "idle_connections"}));  // did you mean
}

TEST_CASE("agent config: verify false is warned about") {
  Parsed p = parse(R"({"gateway": "gw:1", "id": "a", "secret_file": "s", "tls": {"verify": false}})");
  REQUIRE_MESSAGE(p.ok, all_messages(p.diag));
  CHECK(has_warning(p.diag, {"tls.verify", "ca_file"}));
}

TEST_CASE("agent config: not an object, bad JSON") {
  CHECK(has_error(parse("[1]").diag, {"top level must be an object", "config/agent.json"}));
  CHECK_FALSE(parse("{\"gateway\": ").ok);
}

TEST_CASE("agent config: the secret file is read and must be private") {
  TempDir d;
  std::string cfg = d.write("agent.json", kMinimal);
  {
    d.write("agent.secret", "s3cret-value\n", 0600);
    AgentConfig a;
    Diagnostics diag;
    CHECK(load_agent_config(cfg, a, diag));
    CHECK(a.secret == "s3cret-value");
  }
  {
    d.write("agent.secret", "s3cret-value\n", 0640);
    AgentConfig a;
    Diagnostics diag;
    CHECK_FALSE(load_agent_config(cfg, a, diag));
    CHECK(has_error(diag, {"agent.secret", "group or others may access it (mode 0640)",
                           "chmod 600"}));
    CHECK(all_messages(diag).find("s3cret") == std::string::npos);
  }
  {
    d.write("agent.secret", "\n", 0600);
    AgentConfig a;
    Diagnostics diag;
    CHECK_FALSE(load_agent_config(cfg, a, diag));
    CHECK(has_error(diag, {"agent.secret", "1-255 bytes"}));
  }
  {
    d.write("agent.secret", std::string(300, 'x'), 0600);
    AgentConfig a;
    Diagnostics diag;
    CHECK_FALSE(load_agent_config(cfg, a, diag));
  }
  {
    std::string other = d.write("other.json", R"({"gateway": "gw:1", "id": "a", "secret_file": "missing"})");
    AgentConfig a;
    Diagnostics diag;
    CHECK_FALSE(load_agent_config(other, a, diag));
    CHECK(has_error(diag, {"missing", "cannot open", "secret_file in"}));
  }
}

#include "config/config_test_paths.h"
#include "config/json_reader.h"

TEST_CASE("agent config: the shipped example config/agent.json parses") {
  std::string path = std::string(URINGPROXY_SOURCE_ROOT) + "/config/agent.json";
  std::string text, err;
  REQUIRE_MESSAGE(read_config_file(path, 1 << 20, text, err), err);
  AgentConfig a;
  Diagnostics d;
  CHECK_MESSAGE(parse_agent_config(text, path, a, d), all_messages(d));
  CHECK(a.acl.deny_private);
  CHECK(a.tls.verify);
}
