#pragma once
// `uringproxy agent --config agent.json`: the agent mode of the same binary (docs/
// agent-protocol.md). The workers, ring, TLS and relay are the proxy's; this file's supervisor
// (the main thread) keeps one control link and idle_connections reverse links to the gateway,
// reconnecting with exponential backoff and jitter.
#include <string>

namespace up {

// Returns the process exit code; workers < 0: from the config.
int run_agent(const std::string& config_path, int workers);

// `uringproxy agent --check`: prints every error and warning; returns 0 or 1.
int check_agent_config(const std::string& config_path);

}  // namespace up
