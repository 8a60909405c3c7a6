// user list and the user edits.
#include "ctl/format.h"
#include "ctl/json_get.h"
#include "ctl/render_parts.h"
#include "ctl/table.h"

namespace up::ctl {

namespace {

// One limit in force: "unlimited" for 0, " (default)" when it comes from limits, "-" when the
// daemon does not say.
std::string limit_cell(const Value& u, const char* key, const char* from,
                       std::string (*show)(uint64_t)) {
  if (!has_number(u, key)) return "-";
  uint64_t v = get_u64(u, key);
  std::string s = v == 0 ? "unlimited" : show(v);
  return get_str(u, from) == "default" ? s + " (default)" : s;
}

std::string plain_number(uint64_t v) { return std::to_string(v); }

}  // namespace

void render_user_list(const Value& answer, FILE* out) {
  Table t({"USER", "STATUS", "PROXY ID", "GROUPS", "MAX CONN", "BANDWIDTH", "EMAIL", "UUID"});
  const Value* users = member(answer, "users");
  if (users && users->IsArray()) {
    for (const auto& u : users->GetArray()) {
      std::string groups;
      const Value* g = member(u, "groups");
      if (!g || g->IsNull()) {
        groups = "(any)";
      } else if (g->IsArray() && g->Empty()) {
        groups = "(none)";
      } else if (g->IsArray()) {
        for (const auto& x : g->GetArray()) {
          if (!groups.empty()) groups += ',';
          groups += scalar_text(x);
        }
      }
      t.add({get_str(u, "username"), get_bool(u, "enabled", true) ? "✓ Enabled" : "✗ Disabled",
             or_dash(u, "external_proxy_id", "(none)"), groups,
             limit_cell(u, "max_connections", "max_connections_from", plain_number),
             limit_cell(u, "bandwidth_bps", "bandwidth_bps_from", human_bps), or_dash(u, "email"),
             or_dash(u, "uuid")});
    }
  }
  t.print(out);
}

void render_user_edit(const std::string& cmd, const Value& request, const Value& answer,
                      FILE* out) {
  std::string name = get_str(request, "username");
  std::string closed = closed_suffix(answer);
  if (cmd == "user.add") {
    std::string route = is_null_or_absent(request, "proxy")
                            ? "direct routing"
                            : "external proxy " + get_str(request, "proxy");
    fprintf(out, "✓ Added user %s (%s)\n", name.c_str(), route.c_str());
    std::string uuid = get_str(answer, "uuid");
    if (!uuid.empty()) fprintf(out, "  VLESS id: %s\n", uuid.c_str());
  } else if (cmd == "user.del") {
    fprintf(out, "✓ Deleted user %s%s\n", name.c_str(), closed.c_str());
  } else if (cmd == "user.passwd") {
    fprintf(out, "✓ Changed the password of %s%s\n", name.c_str(), closed.c_str());
  } else if (cmd == "user.enable") {
    fprintf(out, "✓ Enabled user %s\n", name.c_str());
  } else if (cmd == "user.disable") {
    fprintf(out, "✓ Disabled user %s%s\n", name.c_str(), closed.c_str());
  } else {
    fprintf(out, "✓ %s %s\n", cmd.c_str(), name.c_str());
  }
}

}  // namespace up::ctl
