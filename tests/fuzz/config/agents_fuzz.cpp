// parse_agents on arbitrary bytes: never crashes, says ok exactly when it reported no error, and
// whatever it accepts holds: valid ids, unique, a crypt hash and a group name for each.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "config/crypt_hash.h"
#include "proto/agent_frame.h"
#include "uringproxy/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<up::Agent> agents;
  up::Diagnostics diag;
  bool ok = up::parse_agents(text, "/fuzz/agents.json", agents, diag);
  if (ok != diag.ok()) abort();
  std::set<std::string> ids;
  for (const up::Agent& a : agents) {
    if (!up::agent::valid_agent_id(a.id) || !ids.insert(a.id).second) abort();
    if (!up::config::is_crypt_hash(a.secret_hash)) abort();
    if (a.group.empty() || a.group.find_first_of(std::string(" \t\r\n:.\0", 7)) != std::string::npos)
      abort();
  }
  return 0;
}
