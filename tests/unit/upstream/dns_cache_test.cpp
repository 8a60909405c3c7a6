#include "upstream/dns_cache.h"

#include <doctest/doctest.h>
#include <netinet/in.h>

#include <string>

namespace {

std::vector<up::ResolvedAddress> one_address() {
  up::ResolvedAddress a{};
  a.addr.ss_family = AF_INET;
  a.len = sizeof(sockaddr_in);
  return {a};
}

}  // namespace

TEST_CASE("DNS cache: a name past its TTL is a miss") {
  up::DnsCache cache(16);
  cache.put("a.test", one_address(), 1000, 0);
  CHECK(cache.find("a.test", 999) != nullptr);
  CHECK(cache.find("a.test", 1000) == nullptr);
  CHECK(cache.size() == 0);
}

TEST_CASE("DNS cache: expired names nobody asks for again are swept") {
  up::DnsCache cache(100000, 10000);
  for (int i = 0; i < 1000; ++i) {
    std::string name = "n";  // appended: GCC 12 warns (-Wrestrict, a false positive) on "n" + s
    name += std::to_string(i) + ".test";
    cache.put(name, one_address(), 20000 + i % 2 * 100000, 10000);
  }
  cache.put("long.test", one_address(), 1000000, 10000);
  CHECK(cache.size() == 1001);
  cache.sweep(15000);  // within the sweep interval: nothing to do yet
  CHECK(cache.size() == 1001);
  cache.sweep(30000);  // half of them expired at 20000
  CHECK(cache.size() == 501);
  cache.sweep(200000);
  CHECK(cache.size() == 1);
  CHECK(cache.find("long.test", 200000) != nullptr);
}

TEST_CASE("DNS cache: never more than its cap, expired entries leave first") {
  up::DnsCache cache(100, 1000);
  for (int i = 0; i < 100; ++i)
    cache.put("old" + std::to_string(i) + ".test", one_address(), 5000, 0);
  CHECK(cache.size() == 100);
  // The old ones expired at 5000: the next put sweeps them instead of evicting live names.
  cache.put("new0.test", one_address(), 100000, 6000);
  CHECK(cache.size() == 1);
  for (int i = 1; i < 10000; ++i)
    cache.put("new" + std::to_string(i) + ".test", one_address(), 100000, 6000);
  CHECK(cache.size() == 100);
  // Replacing a name that is there does not evict another.
  cache.put("new9999.test", one_address(), 200000, 6000);
  CHECK(cache.size() == 100);
  CHECK(cache.find("new9999.test", 150000) != nullptr);
}

TEST_CASE("DNS cache: a cap of 0 caches nothing") {
  up::DnsCache cache(0);
  cache.put("a.test", one_address(), 1000, 0);
  CHECK(cache.size() == 0);
  CHECK(cache.find("a.test", 0) == nullptr);
}
