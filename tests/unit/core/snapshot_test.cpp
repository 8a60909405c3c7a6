// build_snapshot (src/route/snapshot.cpp): errors name the upstream by id and by its place in
// the proxies file.
#include "route/snapshot.h"

#include <doctest/doctest.h>

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
