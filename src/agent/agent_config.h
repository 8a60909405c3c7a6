#pragma once
// agent.json, the configuration of `uringproxy agent` (docs/configuration.md#agent-mode): which
// gateway to dial, who the agent is, and what it may reach. Pure loading: parse_agent_config
// reads text only; load_agent_config also reads the file and the secret file (refused when
// group or others may read it). Every problem names the file, the field and the fix.
#include <cstdint>
#include <optional>
#include <string>

#include "uringproxy/config.h"

namespace up {

struct AgentConfig {
  std::string path;  // absolute path of agent.json
  std::string dir;   // relative paths in it are resolved against this
  std::string gateway;       // "host:port" as written
  std::string gateway_host;  // its host (a name or a literal, brackets removed)
  uint16_t gateway_port = 0;
  std::string id;           // the agent's id in the gateway's agents_file
  std::string secret_file;  // absolute
  std::string secret;       // the file's first line (load_agent_config); never logged
  struct {
    std::string ca_file;      // absolute; empty = the system store
    std::string server_name;  // default: gateway_host
    bool verify = true;
    // Reverse links on TLS 1.2, resuming one session without a key exchange per link (fast,
    // no forward secrecy between the resumed links: agent_main.cpp); false: TLS 1.3 each.
    bool reverse_resumption = true;
  } tls;
  uint32_t idle_connections = 4;  // reverse connections kept ready for tunnels
  unsigned workers = 0;           // 0 = one per CPU
  // The address the agent's connections to targets leave from (port 0: any); absent = the
  // kernel's choice. Several agents on one host can so leave through different addresses.
  std::optional<SocketAddress> source_address;
  uint32_t connect_timeout_ms = 5000;  // to a target, per tunnel
  // The agent's own ACL, as the proxy's "acl": private ranges are denied unless allowed, so a
  // gateway cannot make the agent reach its LAN.
  AclConfig acl;
  decltype(Config::dns) dns;
  uint32_t shutdown_grace_ms = 10000;  // open tunnels may finish on SIGTERM
};

bool parse_agent_config(const std::string& text, const std::string& path, AgentConfig& out,
                        Diagnostics& diag);

// Reads `path`, then the secret file it names (mode 0600 or stricter, 1-255 bytes on its first
// line).
bool load_agent_config(const std::string& path, AgentConfig& out, Diagnostics& diag);

// The egress settings as the proxy's Config, for the workers' snapshot (ACL, DNS, timeouts).
Config egress_config(const AgentConfig& a);

}  // namespace up
