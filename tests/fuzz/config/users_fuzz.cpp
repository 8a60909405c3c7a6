// parse_users on arbitrary bytes: never crashes; whatever it accepts, users_to_json writes in a
// form that parses back to the same users (and writes the same text again).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config_equal.h"
#include "uringproxy/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<up::User> users;
  up::Diagnostics diag;
  bool ok = up::parse_users(text, "/fuzz/users.json", users, diag);
  if (ok != diag.ok()) abort();
  if (!ok) return 0;
  std::string json = up::users_to_json(users);
  std::vector<up::User> back;
  up::Diagnostics diag2;
  if (!up::parse_users(json, "/fuzz/users.json", back, diag2)) abort();
  if (!up::config::same_list(users, back, up::config::same_user)) abort();
  if (up::users_to_json(back) != json) abort();
  return 0;
}
