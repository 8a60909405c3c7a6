#pragma once
// `uringproxyctl store import`: users, upstreams and agents from today's JSON files into the
// PostgreSQL store, in one transaction followed by NOTIFY (docs/uringproxyctl.md).
#include <string>
#include <vector>

#include "uringproxy/config.h"

namespace up {

// Inserts or replaces every record by its key (users by username, upstreams and agents by id);
// records the files do not name are kept. "" with `done` saying how many, or why nothing was
// imported.
std::string import_into_store(const StoreConfig& store, const std::vector<User>& users,
                              const std::vector<UpstreamProxy>& proxies,
                              const std::vector<Agent>& agents, std::string& done);

}  // namespace up
