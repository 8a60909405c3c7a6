// parse_proxies (src/config/proxies_loader.cpp): external_proxy.json fields and their messages.
#include <doctest/doctest.h>

#include "config_test_util.h"
#include "uringproxy/config.h"

using namespace up;
using up::test::all_messages;
using up::test::has_error;
using up::test::has_warning;

namespace {

struct Parsed {
  std::vector<UpstreamProxy> proxies;
  Diagnostics diag;
  bool ok = false;
};

Parsed parse(const std::string& text, const char* path = "/etc/up/external_proxy.json") {
  Parsed p;
  p.ok = parse_proxies(text, path, p.proxies, p.diag);
  INFO(all_messages(p.diag));
  CHECK(p.ok == p.diag.ok());
  return p;
}

std::string one(const std::string& fields) { return "{\"proxies\": [{" + fields + "}]}"; }
const char* kBase = R"("id": "p1", "type": "socks5", "address": "10.0.0.1", "port": 1080)";

}  // namespace

TEST_CASE("config proxies: the documented example and the seed's shape") {
  Parsed p = parse(R"({"proxies": [
  {"id": "proxy-us-east", "name": "US East Proxy", "type": "socks5s",
   "address": "proxy-us.example.com", "port": 1080, "username": "proxyuser", "password": "s3cret",
   "enabled": true, "group": "us-east",
   "tls": {"server_name": "proxy-us.example.com", "verify": true, "ca_file": "certs/ca.pem"},
   "on_failure": "reject"},
  {"id": "proxy-eu-west", "name": "EU West Proxy", "type": "https",
   "address": "proxy-eu.example.com", "port": 8443, "username": "proxyuser",
   "password": "encrypted_password_hash", "enabled": true, "created_at": "2026-01-07"},
  {"id": "plain", "type": "http", "address": "2001:db8::1", "port": 3128, "enabled": false,
   "on_failure": "proxy-eu-west"}
]})");
  REQUIRE(p.ok);
  REQUIRE(p.proxies.size() == 3);
  const UpstreamProxy& a = p.proxies[0];
  CHECK(a.id == "proxy-us-east");
  CHECK(a.name == "US East Proxy");
  CHECK(a.type == UpstreamType::socks5s);
  CHECK(a.address == "proxy-us.example.com");
  CHECK(a.port == 1080);
  CHECK(a.username == "proxyuser");
  CHECK(a.password == "s3cret");
  CHECK(a.group == "us-east");
  CHECK(a.tls.verify);
  CHECK(a.tls.ca_file == "/etc/up/certs/ca.pem");  // relative to the proxies file
  CHECK(a.on_failure.kind == OnFailure::Kind::reject);
  const UpstreamProxy& b = p.proxies[1];
  CHECK(b.type == UpstreamType::https);
  CHECK(b.tls.server_name == "proxy-eu.example.com");  // defaults to the address
  CHECK(b.on_failure.kind == OnFailure::Kind::unset);
  const UpstreamProxy& c = p.proxies[2];
  CHECK(!c.enabled);
  CHECK(c.tls.server_name.empty());
  CHECK(c.on_failure.kind == OnFailure::Kind::upstream);
  CHECK(c.on_failure.upstream_id == "proxy-eu-west");
  CHECK_FALSE(has_warning(p.diag, {"/etc/up/external_proxy.json: proxies: accepted, but upstream proxies are not implemented yet"}));  // landed: no warning
  CHECK(all_messages(p.diag).find("s3cret") == std::string::npos);
}

TEST_CASE("config proxies: an empty list is fine and warns nothing") {
  Parsed p = parse(R"({"proxies": []})");
  CHECK(p.ok);
  CHECK(p.diag.warnings.empty());
}

TEST_CASE("config proxies: required fields and types") {
  Parsed p = parse(R"({"proxies": [{}]})");
  CHECK(has_error(p.diag, {"proxies[0].id: is required"}));
  CHECK(has_error(p.diag, {"proxies[0].type: is required"}));
  CHECK(has_error(p.diag, {"proxies[0].address: is required"}));
  CHECK(has_error(p.diag, {"proxies[0].port: is required (an integer 1..65535)"}));
  Parsed bad = parse(one(R"("id": "", "type": "socks4", "address": "h:1080", "port": 0, "enabled": "yes", "group": "a.b")"));
  CHECK(has_error(bad.diag, {"proxies[0].id: must not be empty"}));
  CHECK(has_error(bad.diag, {"proxies[0].type: \"socks4\" is not a proxy type; use \"socks5\""}));
  CHECK(has_error(bad.diag, {"proxies[0].address: \"h:1080\" is not a host name or IP address (the port goes in \"port\")"}));
  CHECK(has_error(bad.diag, {"proxies[0].port: 0 is out of range (1..65535)"}));
  CHECK(has_error(bad.diag, {"proxies[0].enabled: must be true or false"}));
  CHECK(has_error(bad.diag, {"proxies[0].group: \"a.b\" is not a group name"}));
  CHECK(has_error(parse(one(std::string(kBase) + R"(, "port": 65536)")).diag, {"port: appears more than once"}));
  CHECK(has_error(parse(R"({"proxies": {}})").diag, {"proxies: must be an array"}));
}

TEST_CASE("config proxies: ids are unique") {
  Parsed p = parse(R"({"proxies": [
    {"id": "a", "type": "http", "address": "h", "port": 1},
    {"id": "a", "type": "http", "address": "h", "port": 2}]})");
  CHECK(has_error(p.diag, {"upstream \"a\" (proxies[1]).id: is already upstream \"a\" (proxies[0]); ids must be unique"}));
}

TEST_CASE("config proxies: SOCKS5 credentials fit RFC 1929, and passwords are never shown") {
  std::string longpw(256, 'P');
  Parsed p = parse(one(std::string(kBase) + ", \"password\": \"" + longpw + "\""));
  CHECK(has_error(p.diag, {"upstream \"p1\" (proxies[0]).password: is longer than 255 bytes, more than SOCKS5 can send"}));
  CHECK(all_messages(p.diag).find("PPPP") == std::string::npos);
  CHECK(parse(one(R"("id": "p", "type": "http", "address": "h", "port": 1, "password": ")" + longpw + "\"")).ok);
  Parsed t = parse(one(std::string(kBase) + R"(, "password": 12345678)"));
  CHECK(has_error(t.diag, {"upstream \"p1\" (proxies[0]).password: must be a string, not a number"}));
  CHECK(all_messages(t.diag).find("12345678") == std::string::npos);
}

TEST_CASE("config proxies: tls only on TLS types") {
  Parsed p = parse(one(std::string(kBase) + R"(, "tls": {"verify": false})"));
  CHECK(has_error(p.diag, {"upstream \"p1\" (proxies[0]).tls: is only for TLS types; use type \"socks5s\" or remove the tls block"}));
  Parsed h = parse(one(R"("id": "p", "type": "http", "address": "h", "port": 1, "tls": {})"));
  CHECK(has_error(h.diag, {"use type \"https\""}));
  Parsed ok = parse(one(R"("id": "p", "type": "https", "address": "10.1.1.1", "port": 1,
                           "tls": {"server_name": "proxy.example", "verify": false, "ca_file": "/etc/ssl/ca.pem"})"));
  REQUIRE(ok.ok);
  CHECK(ok.proxies[0].tls.server_name == "proxy.example");
  CHECK(!ok.proxies[0].tls.verify);
  CHECK(ok.proxies[0].tls.ca_file == "/etc/ssl/ca.pem");
  Parsed bad = parse(one(R"("id": "p", "type": "https", "address": "h", "port": 1,
                            "tls": {"server_name": "bad name", "verfy": true})"));
  CHECK(has_error(bad.diag, {"upstream \"p\" (proxies[0]).tls.server_name: \"bad name\" is not a host name"}));
  CHECK(has_error(bad.diag, {"upstream \"p\" (proxies[0]).tls.verfy: unknown field (did you mean \"verify\"?)"}));
}

TEST_CASE("config proxies: on_failure references and loops") {
  Parsed self = parse(one(std::string(kBase) + R"(, "on_failure": "p1")"));
  CHECK(has_error(self.diag, {"upstream \"p1\" (proxies[0]).on_failure: names this proxy itself"}));
  Parsed missing = parse(one(std::string(kBase) + R"(, "on_failure": "nowhere")"));
  CHECK(has_error(missing.diag, {"upstream \"p1\" (proxies[0]).on_failure: \"nowhere\" is not the id of a proxy in this file"}));
  Parsed loop = parse(R"({"proxies": [
    {"id": "a", "type": "http", "address": "h", "port": 1, "on_failure": "b"},
    {"id": "b", "type": "http", "address": "h", "port": 2, "on_failure": "c"},
    {"id": "c", "type": "http", "address": "h", "port": 3, "on_failure": "a"},
    {"id": "d", "type": "http", "address": "h", "port": 4, "on_failure": "a"}]})");
  CHECK(loop.diag.errors.size() == 1);
  CHECK(has_error(loop.diag, {"upstream \"a\" (proxies[0]).on_failure: makes a loop (a -> b -> c -> a); end the chain with \"reject\" or \"direct\""}));
  Parsed chain = parse(R"({"proxies": [
    {"id": "a", "type": "http", "address": "h", "port": 1, "on_failure": "b"},
    {"id": "b", "type": "http", "address": "h", "port": 2, "on_failure": "direct"}]})");
  CHECK(chain.ok);
  // A reference to a proxy that has its own errors is not reported as missing.
  Parsed broken = parse(R"({"proxies": [
    {"id": "a", "type": "http", "address": "h", "port": 1, "on_failure": "b"},
    {"id": "b", "type": "http", "address": "h", "port": 0}]})");
  CHECK(broken.diag.errors.size() == 1);
}

TEST_CASE("config proxies: unknown fields with suggestions") {
  Parsed p = parse(one(std::string(kBase) + R"(, "adress": "x", "groups": "g")"));
  CHECK(has_error(p.diag, {"upstream \"p1\" (proxies[0]).adress: unknown field (did you mean \"address\"?)"}));
  CHECK(has_error(p.diag, {"upstream \"p1\" (proxies[0]).groups: unknown field (did you mean \"group\"?)"}));
}

TEST_CASE("config proxies: ids starting with agent: are the agents'") {
  Parsed p = parse(R"({"proxies": [{"id": "agent:home-1", "type": "http", "address": "h", "port": 1}]})");
  CHECK(has_error(p.diag, {"(proxies[0]).id: \"agent:home-1\": ids starting with \"agent:\" name agents"}));
}

TEST_CASE("config proxies: messages name the upstream by id, then the index") {
  Parsed p = parse(R"({"proxies": [
    {"id": "eu1", "type": "http", "address": "h", "port": 1},
    {"id": "eu2", "type": "http", "address": "h", "port": 2},
    {"id": "us1", "type": "http", "address": "h", "port": 70000, "on_failure": "gone"},
    {"id": "has space", "type": "http", "address": "h", "port": 3}]})",
                   "external_proxy.json");
  CHECK(has_error(p.diag, {"external_proxy.json: upstream \"us1\" (proxies[2]).port: 70000 is out of range (1..65535)"}));
  // An id that is not one (here the cause of the error) does not name the entry.
  CHECK(has_error(p.diag, {"external_proxy.json: proxies[3].id: \"has space\" contains whitespace"}));
  Parsed f = parse(R"({"proxies": [{"id": "a", "type": "http", "address": "h", "port": 1},
                                   {"id": "us1", "type": "http", "address": "h", "port": 2,
                                    "on_failure": "gone"}]})", "external_proxy.json");
  CHECK(has_error(f.diag, {"external_proxy.json: upstream \"us1\" (proxies[1]).on_failure: \"gone\" is not the id"}));
}
