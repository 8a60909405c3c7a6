// Dispatch of the human renderers, the refusal message, and the helpers they share.
#include "ctl/render.h"

#include "ctl/json_get.h"
#include "ctl/render_parts.h"

namespace up::ctl {

std::string proxy_status(const Value& obj) {
  if (!get_bool(obj, "enabled", true)) return "✗ Disabled";
  if (!get_bool(obj, "up", true)) return "✗ Down";
  return "✓ Enabled";
}

std::string closed_suffix(const Value& answer) {
  if (!has_number(answer, "closed")) return "";
  uint64_t n = get_u64(answer, "closed");
  if (n == 0) return "";
  return " (closed " + std::to_string(n) + (n == 1 ? " tunnel)" : " tunnels)");
}

std::string or_dash(const Value& obj, const char* key, const char* dash) {
  std::string s = get_str(obj, key);
  return s.empty() ? dash : s;
}

void render_ok(const std::string& cmd, const Value& request, const Value& answer, FILE* out) {
  if (cmd == "status") return render_status(answer, out);
  if (cmd == "reload") return render_reload(answer, out);
  if (cmd == "stats") return render_stats(answer, out);
  if (cmd == "connections") return render_connections(answer, out);
  if (cmd == "kick") return render_kick(request, answer, out);
  if (cmd == "user.list") return render_user_list(answer, out);
  if (cmd.rfind("user.", 0) == 0) return render_user_edit(cmd, request, answer, out);
  if (cmd == "set-proxy") return render_set_proxy(request, answer, out);
  if (cmd == "show-proxy") return render_show_proxy(request, answer, out);
  if (cmd == "list-proxy-assignments") return render_assignments(answer, out);
  if (cmd == "proxy.list") return render_proxy_list(answer, out);
  if (cmd == "agents") return render_agents(answer, out);
  if (cmd.rfind("agent.", 0) == 0) return render_agent_edit(cmd, request, answer, out);
  if (cmd == "usage") return render_usage(answer, out);
  if (cmd.rfind("quota.", 0) == 0) return render_quota_edit(cmd, request, answer, out);
  if (cmd.rfind("proxy.", 0) == 0) return render_proxy_edit(cmd, request, answer, out);
  fprintf(out, "✓ %s\n", cmd.c_str());
}

void render_refusal(const std::string& cmd, const Value& answer, FILE* err) {
  std::string error = get_str(answer, "error", "the daemon refused " + cmd + " (no reason given)");
  fprintf(err, "error: %s\n", error.c_str());
  const Value* errors = member(answer, "errors");
  if (errors && errors->IsArray()) {
    for (const auto& e : errors->GetArray()) {
      std::string text = scalar_text(e);
      if (text != error) fprintf(err, "  - %s\n", text.c_str());
    }
  }
}

}  // namespace up::ctl
