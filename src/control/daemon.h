#pragma once
// The management side of the daemon: loads and validates the files, publishes snapshots,
// starts the workers, and then runs the management loop on the calling thread (signals:
// SIGHUP reload, SIGTERM/SIGINT drain and stop; periodic snapshot reclamation).
#include <string>

namespace up {

struct DaemonOptions {
  std::string config_path;
  int workers = -1;  // -1: from the config
};

// Returns the process exit code.
int run_daemon(const DaemonOptions& opts);

// `uringproxy --check`: prints every error and warning; returns 0 or 1.
int check_config(const std::string& config_path);

// `uringproxy --migrate`: creates or upgrades the PostgreSQL store's schema; returns 0 or 1.
int migrate(const std::string& config_path);

}  // namespace up
