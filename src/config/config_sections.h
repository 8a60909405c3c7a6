#pragma once
// Sections that uringproxy.json and the agent's agent.json (src/agent/agent_config.cpp) write
// the same way, read by the same code so their fields and messages cannot drift apart.
#include "config/json_reader.h"
#include "uringproxy/config.h"

namespace up::config {

void read_dns_section(ObjectReader& root, Config& out);  // "dns": servers, cache_max_ttl_s
void read_acl_section(ObjectReader& root, Config& out);  // "acl": deny_private, allow, deny, ...

}  // namespace up::config
