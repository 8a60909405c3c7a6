// What a node spends on its users and upstreams (bench/RESULTS.md, "Fleet"): reading N users and
// 1,000 upstreams in the store's shapes and building the snapshot from them (a start-up or a full
// read after a reconnect), and publishing a one-user edit (what another node's edit costs once
// its row is read). Counters: heap_MiB is what the ConfigSet and the snapshot hold (glibc
// mallinfo2, measured once per size before timing).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "route/snapshot.h"
#include "route/upstream_health.h"
#include "route/user_limits.h"
#include "uringproxy/config.h"

namespace {

// One sha512-crypt hash for everyone: the loader checks its form, not its cost.
constexpr const char* kHash =
    "$6$benchsalt$0pUTNbLPue/fI/MR/eViT03YlCmAt7Teny0pK/6f5M7/ELn"
    "0sNpFq5HzEd0.pSnBGDF2e4SWtmATR4lMgQ7hu/";

std::string users_doc(int n) {
  std::string s = "{\"users\":[";
  for (int i = 0; i < n; ++i) {
    if (i) s += ',';
    char uuid[40];
    snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012x", i, i);
    s += "{\"username\":\"u" + std::to_string(i) + "\",\"password\":\"" + kHash +
         "\",\"uuid\":\"" + uuid + "\",\"email\":\"u" + std::to_string(i) + "@bench.test\"";
    // Every tenth user has an upstream, every fifth a group, every third a quota.
    if (i % 10 == 0) s += ",\"external_proxy_id\":\"p" + std::to_string(i % 1000) + "\"";
    if (i % 5 == 0) s += ",\"groups\":[\"g" + std::to_string(i % 20) + "\"]";
    if (i % 3 == 0) s += ",\"quota_bytes\":1000000000,\"quota_period\":\"month\"";
    s += '}';
  }
  return s + "]}";
}

std::string proxies_doc(int n) {
  std::string s = "{\"proxies\":[";
  for (int i = 0; i < n; ++i) {
    if (i) s += ',';
    s += "{\"id\":\"p" + std::to_string(i) + "\",\"type\":\"socks5\",\"address\":\"10.0." +
         std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) +
         "\",\"port\":1080,\"group\":\"g" + std::to_string(i % 20) + "\"}";
  }
  return s + "]}";
}

struct Docs {
  std::string users, proxies;
};

const Docs& docs(int n) {
  static std::vector<std::pair<int, std::unique_ptr<Docs>>> made;
  for (auto& [k, d] : made)
    if (k == n) return *d;
  made.emplace_back(n, std::make_unique<Docs>(Docs{users_doc(n), proxies_doc(1000)}));
  return *made.back().second;
}

up::ConfigSet base_set() {
  up::ConfigSet set;
  set.config.store.type = up::StoreConfig::Type::postgres;
  return set;
}

// The records read and checked, then the snapshot built: a full read.
std::unique_ptr<up::Snapshot> full_read(const Docs& d, up::ConfigSet& set, up::HealthBoard& h,
                                        up::UserBoard& b) {
  up::Diagnostics diag;
  if (!up::apply_store_records(d.users, d.proxies, "{\"groups\":{}}", set, diag)) return nullptr;
  std::vector<std::string> errors;
  return up::build_snapshot(set, 1, h, b, errors);
}

size_t heap_bytes() { return mallinfo2().uordblks; }

void BM_FullRead(benchmark::State& state) {
  const Docs& d = docs(static_cast<int>(state.range(0)));
  up::HealthBoard health;
  up::UserBoard board;
  double heap_mib = 0;
  {
    size_t before = heap_bytes();
    up::ConfigSet set = base_set();
    auto snap = full_read(d, set, health, board);
    if (!snap) {
      state.SkipWithError("the generated records do not load");
      return;
    }
    heap_mib = static_cast<double>(heap_bytes() - before) / (1 << 20);
  }
  for (auto _ : state) {
    up::ConfigSet set = base_set();
    auto snap = full_read(d, set, health, board);
    benchmark::DoNotOptimize(snap.get());
  }
  state.counters["heap_MiB"] = heap_mib;
  state.counters["users_doc_MB"] = static_cast<double>(d.users.size()) / 1e6;
}
BENCHMARK(BM_FullRead)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(3);

// Only the build, from records already checked (a reload's share once the files are read).
void BM_BuildSnapshot(benchmark::State& state) {
  const Docs& d = docs(static_cast<int>(state.range(0)));
  up::HealthBoard health;
  up::UserBoard board;
  up::ConfigSet set = base_set();
  up::Diagnostics diag;
  up::apply_store_records(d.users, d.proxies, "{\"groups\":{}}", set, diag);
  for (auto _ : state) {
    std::vector<std::string> errors;
    auto snap = up::build_snapshot(set, 1, health, board, errors);
    benchmark::DoNotOptimize(snap.get());
  }
}
BENCHMARK(BM_BuildSnapshot)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(3);

// One user changed: the next snapshot shares everything else with the last (edits chained, so
// the overlay grows and is folded as it would be on a node).
void BM_OneUserEdit(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  const Docs& d = docs(n);
  up::HealthBoard health;
  up::UserBoard board;
  up::ConfigSet set = base_set();
  std::unique_ptr<up::Snapshot> snap = full_read(d, set, health, board);
  up::User u = set.users[7];
  uint64_t gen = 1, i = 0;
  for (auto _ : state) {
    char name[24];  // snprintf: GCC 12 warns -Wrestrict (falsely) on "u" + std::to_string here
    std::snprintf(name, sizeof name, "u%llu",
                  static_cast<unsigned long long>(i++ * 7919 % static_cast<uint64_t>(n)));
    u.username = name;
    u.uuid.clear();
    u.enabled = !u.enabled;
    snap = up::snapshot_with_user(*snap, ++gen, u.username, &u, board);
  }
}
BENCHMARK(BM_OneUserEdit)->Arg(10000)->Arg(100000)->Unit(benchmark::kMicrosecond);

}  // namespace
