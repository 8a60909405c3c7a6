// What ACL lists cost a new connection: the two checks a direct route makes (the target as
// named, then its resolved address), with no lists and with 10,000 entries of each kind.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "route/acl.h"

namespace {

up::Acl make_acl(int n) {
  std::vector<std::string> deny;
  for (int i = 0; i < n; ++i) {
    deny.push_back("10." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) + ".0/24");
    deny.push_back("blocked" + std::to_string(i) + ".example");
    deny.push_back("*.evil" + std::to_string(i) + ".example");
  }
  return up::Acl(true, {}, deny, {25});
}

void run(benchmark::State& state) {
  up::Acl acl = make_acl(static_cast<int>(state.range(0)));
  up::Target t;
  up::parse_authority("www.some-site.example:443", 0, t);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, "93.184.216.34", &sa.sin_addr);
  for (auto _ : state) {
    benchmark::DoNotOptimize(acl.check_target(t, nullptr));
    benchmark::DoNotOptimize(acl.address_allowed(reinterpret_cast<sockaddr*>(&sa), nullptr, false));
  }
}
BENCHMARK(run)->Name("BM_AclCheck")->Arg(0)->Arg(10000);

}  // namespace
