#pragma once
// `uringproxyctl store import`: runs here, not in the daemon (docs/uringproxyctl.md).
#include <string>

namespace up::ctl {

// Loads the users, upstreams and agents files (default: the ones `config_file` names) with the
// daemon's loaders and imports them into the config's PostgreSQL store. Returns the exit code.
int store_import(const std::string& config_file, const std::string& users_file,
                 const std::string& proxies_file, const std::string& agents_file);

}  // namespace up::ctl
