// parse_config on arbitrary bytes: never crashes, and what it accepts is self-consistent.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "uringproxy/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  up::Config config;
  up::Diagnostics diag;
  bool ok = up::parse_config(text, "/fuzz/uringproxy.json", config, diag);
  if (ok != diag.ok()) abort();
  if (!ok) return 0;
  if (config.listeners.empty()) abort();
  if (config.auth_required && config.users_file.empty()) abort();
  for (const up::ListenerConfig& l : config.listeners) {
    up::SocketAddress again;
    if (!up::parse_socket_address(l.listen.text, again)) abort();
    if (l.protocol == up::Protocol::vless && !l.tls) abort();
  }
  if (config.workers > 1024) abort();
  return 0;
}
