// parse_proxies on arbitrary bytes: never crashes; whatever it accepts, proxies_to_json writes
// in a form that parses back to the same proxies (and writes the same text again).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config_equal.h"
#include "uringproxy/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<up::UpstreamProxy> proxies;
  up::Diagnostics diag;
  bool ok = up::parse_proxies(text, "/fuzz/external_proxy.json", proxies, diag);
  if (ok != diag.ok()) abort();
  if (!ok) return 0;
  std::string json = up::proxies_to_json(proxies);
  std::vector<up::UpstreamProxy> back;
  up::Diagnostics diag2;
  if (!up::parse_proxies(json, "/fuzz/external_proxy.json", back, diag2)) abort();
  if (!up::config::same_list(proxies, back, up::config::same_proxy)) abort();
  if (up::proxies_to_json(back) != json) abort();
  return 0;
}
