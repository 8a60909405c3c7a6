// users_to_json / proxies_to_json (src/config/serialise.cpp): what they write parses back to the
// same records.
#include <doctest/doctest.h>

#include "config/config_equal.h"
#include "config_test_util.h"
#include "uringproxy/config.h"

using namespace up;
using up::test::all_messages;
using up::test::kSha512;
using up::test::kYescrypt;

TEST_CASE("config serialise: users round trip") {
  std::vector<User> users(3);
  users[0].username = "alice";
  users[0].password_hash = kYescrypt;
  users[0].uuid = "a1b2c3d4-e5f6-7890-1234-567890abcdef";
  users[0].email = "alice@vless.local";
  users[0].external_proxy_id = "proxy-us-east";
  users[0].groups = std::vector<std::string>{"us-east", "production"};
  users[0].max_connections = 100;
  users[0].bandwidth_bps = 10'000'000'000ull;
  users[0].allow = {"10.0.0.0/8", "*.example.com"};
  users[0].deny = {"ads.example.com"};
  users[1].username = "bob";
  users[1].password_hash = kSha512;
  users[1].enabled = false;
  users[1].groups = std::vector<std::string>{};  // present but empty differs from absent
  users[1].email = "quote\" back\\slash \xc3\xa9";
  users[1].max_connections = 0;  // explicit 0 (unlimited) differs from absent (the default)
  users[1].bandwidth_bps = 0;
  users[1].quota_bytes = 1073741824;
  users[1].quota_period = QuotaPeriod::week;
  users[2].username = "charlie";
  users[2].password_hash = kSha512;

  std::string json = users_to_json(users);
  CHECK(json.find("\"quota_bytes\": 1073741824,\n      \"quota_period\": \"week\"") !=
        std::string::npos);
  CHECK(json.rfind("{\n  \"users\": [\n    {\n      \"username\": \"alice\",\n", 0) == 0);
  CHECK(json.find("      \"groups\": [\"us-east\", \"production\"],\n") != std::string::npos);
  CHECK(json.find("\"external_proxy_id\": null") != std::string::npos);
  std::vector<User> back;
  Diagnostics d;
  REQUIRE_MESSAGE(parse_users(json, "users.json", back, d), all_messages(d));
  CHECK(config::same_list(users, back, config::same_user));
  CHECK(users_to_json(back) == json);
  CHECK(!back[2].groups);
  REQUIRE(back[1].groups);
  CHECK(back[1].max_connections == std::optional<uint32_t>(0));
  CHECK(back[1].bandwidth_bps == std::optional<uint64_t>(0));
  CHECK(!back[2].max_connections);
  CHECK(!back[2].bandwidth_bps);
  CHECK(json.find("\"max_connections\": 0") != std::string::npos);
}

TEST_CASE("config serialise: users from cached records is users_to_json") {
  std::vector<User> users(3);
  users[0].username = "alice";
  users[0].password_hash = kYescrypt;
  users[0].groups = std::vector<std::string>{"us-east"};
  users[0].allow = {"10.0.0.0/8"};
  users[1].username = "bob";
  users[1].password_hash = kSha512;
  users[1].enabled = false;
  users[1].email = "quote\" back\\slash";
  users[2].username = "charlie";
  users[2].password_hash = kSha512;
  std::string out = "left over from the last edit";
  for (size_t n = 0; n <= users.size(); ++n) {
    std::vector<User> some(users.begin(), users.begin() + static_cast<std::ptrdiff_t>(n));
    std::vector<std::string> records;
    for (const User& u : some) records.push_back(user_json_record(u));
    users_json_from_records(records, out);
    CHECK(out == users_to_json(some));
  }
}

TEST_CASE("config serialise: proxies round trip") {
  std::vector<UpstreamProxy> ps(3);
  ps[0].id = "proxy-us-east";
  ps[0].name = "US East Proxy";
  ps[0].type = UpstreamType::socks5s;
  ps[0].address = "proxy-us.example.com";
  ps[0].port = 1080;
  ps[0].username = "proxyuser";
  ps[0].password = "p\"w\\d";
  ps[0].group = "us-east";
  ps[0].tls = {"sni.example.com", false, "/etc/up/certs/ca.pem"};
  ps[0].on_failure = {OnFailure::Kind::upstream, "eu"};
  ps[1].id = "eu";
  ps[1].type = UpstreamType::https;
  ps[1].address = "10.0.0.2";
  ps[1].port = 443;
  ps[1].tls.server_name = "10.0.0.2";
  ps[1].on_failure = {OnFailure::Kind::direct, {}};
  ps[1].enabled = false;
  ps[2].id = "plain";
  ps[2].type = UpstreamType::http;
  ps[2].address = "2001:db8::1";
  ps[2].port = 3128;
  ps[2].on_failure = {OnFailure::Kind::reject, {}};

  std::string json = proxies_to_json(ps);
  std::vector<UpstreamProxy> back;
  Diagnostics d;
  REQUIRE_MESSAGE(parse_proxies(json, "/elsewhere/external_proxy.json", back, d), all_messages(d));
  CHECK(config::same_list(ps, back, config::same_proxy));
  CHECK(proxies_to_json(back) == json);
}

TEST_CASE("config serialise: empty lists") {
  CHECK(users_to_json({}) == "{\n  \"users\": []\n}\n");
  CHECK(proxies_to_json({}) == "{\n  \"proxies\": []\n}\n");
  std::vector<User> u;
  Diagnostics d;
  CHECK(parse_users(users_to_json({}), "u.json", u, d));
}

TEST_CASE("config serialise: to_string names match the files") {
  CHECK(std::string(to_string(Protocol::socks5)) == "socks5");
  CHECK(std::string(to_string(Protocol::http)) == "http");
  CHECK(std::string(to_string(Protocol::vless)) == "vless");
  CHECK(std::string(to_string(UpstreamType::socks5)) == "socks5");
  CHECK(std::string(to_string(UpstreamType::socks5s)) == "socks5s");
  CHECK(std::string(to_string(UpstreamType::http)) == "http");
  CHECK(std::string(to_string(UpstreamType::https)) == "https");
}
