#include "ctl/store_import.h"

#include <stdio.h>

#include "ctl/execute.h"
#include "store/pg_import.h"
#include "uringproxy/config.h"

namespace up::ctl {

namespace {

// Reads and validates one file with `parse`; false (reported) when it does not load.
template <typename T, typename Parse>
bool load(const std::string& path, uint64_t cap, Parse parse, std::vector<T>& out) {
  std::string text, why;
  if (!read_config_file(path, cap, text, why)) {
    fprintf(stderr, "error: %s: %s\n", path.c_str(), why.c_str());
    return false;
  }
  Diagnostics d;
  bool ok = parse(text, path, out, d, nullptr) && d.ok();
  for (const auto& e : d.errors) fprintf(stderr, "error: %s\n", e.c_str());
  return ok;
}

}  // namespace

int store_import(const std::string& config_file, const std::string& users_file,
                 const std::string& proxies_file, const std::string& agents_file) {
  if (config_file.empty()) {
    fprintf(stderr, "uringproxyctl: store import needs --config FILE (its store block names "
                    "the database)\n");
    return kExitUsage;
  }
  std::string text, why;
  if (!read_config_file(config_file, kDefaultMaxConfigFileBytes, text, why)) {
    fprintf(stderr, "uringproxyctl: cannot read config %s: %s\n", config_file.c_str(),
            why.c_str());
    return kExitUsage;
  }
  Config cfg;
  Diagnostics diag;
  bool ok = parse_config(text, config_file, cfg, diag) && diag.ok();
  for (const auto& e : diag.errors) fprintf(stderr, "error: %s\n", e.c_str());
  if (!ok) return kExitRefused;
  if (cfg.store.type != StoreConfig::Type::postgres) {
    fprintf(stderr, "error: %s: store import needs \"store\": {\"type\": \"postgres\", ...}\n",
            config_file.c_str());
    return kExitRefused;
  }
  const uint64_t cap = cfg.limits.max_config_file_bytes;
  std::string users_path = users_file.empty() ? cfg.users_file : users_file;
  std::string proxies_path = proxies_file.empty() ? cfg.proxies_file : proxies_file;
  std::string agents_path = agents_file.empty() ? cfg.agents_file : agents_file;
  std::vector<User> users;
  std::vector<UpstreamProxy> proxies;
  std::vector<Agent> agents;
  if (!users_path.empty() && !load(users_path, cap, parse_users, users)) return kExitRefused;
  if (!proxies_path.empty() && !load(proxies_path, cap, parse_proxies, proxies))
    return kExitRefused;
  if (!agents_path.empty() && !load(agents_path, cap, parse_agents, agents)) return kExitRefused;
  std::string done;
  if (std::string e = import_into_store(cfg.store, users, proxies, agents, done); !e.empty()) {
    fprintf(stderr, "error: %s\n", e.c_str());
    return kExitRefused;
  }
  printf("✓ %s\n", done.c_str());
  return kExitOk;
}

}  // namespace up::ctl
