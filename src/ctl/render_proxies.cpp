// proxy list and the proxy edits (never a password: the daemon does not send one either).
#include "ctl/format.h"
#include "ctl/json_get.h"
#include "ctl/render_parts.h"
#include "ctl/table.h"

namespace up::ctl {

void render_proxy_list(const Value& answer, FILE* out) {
  Table t({"ID", "NAME", "TYPE", "ADDRESS", "USERNAME", "GROUP", "STATUS", "ACTIVE"});
  const Value* rows = member(answer, "proxies");
  if (rows && rows->IsArray()) {
    for (const auto& p : rows->GetArray()) {
      t.add({get_str(p, "id"), or_dash(p, "name"), or_dash(p, "type"),
             host_port(get_str(p, "address"), get_u64(p, "port")), or_dash(p, "username"),
             or_dash(p, "group"), proxy_status(p),
             has_number(p, "active") ? std::to_string(get_u64(p, "active")) : "-"});
    }
  }
  t.print(out);
}

void render_agents(const Value& answer, FILE* out) {
  Table t({"ID", "GROUP", "STATUS", "ADDRESS", "VERSION", "IDLE", "TUNNELS", "CONNECTED_SINCE"});
  const Value* rows = member(answer, "agents");
  if (rows && rows->IsArray()) {
    for (const auto& p : rows->GetArray()) {
      std::string status = !get_bool(p, "enabled", true) ? "disabled"
                           : get_bool(p, "connected", false) ? "connected"
                                                               : "down";
      t.add({get_str(p, "id"), or_dash(p, "group"), status, or_dash(p, "address"),
             or_dash(p, "version"), std::to_string(get_u64(p, "idle")),
             std::to_string(get_u64(p, "tunnels")), or_dash(p, "connected_since")});
    }
  }
  t.print(out);
}

void render_agent_edit(const std::string& cmd, const Value& request, const Value& answer,
                       FILE* out) {
  std::string id = get_str(request, "id");
  if (cmd == "agent.add") fprintf(out, "✓ Agent added: %s\n", id.c_str());
  else if (cmd == "agent.del") fprintf(out, "✓ Deleted agent %s\n", id.c_str());
  else if (cmd == "agent.enable") fprintf(out, "✓ Enabled agent %s\n", id.c_str());
  else if (cmd == "agent.disable") fprintf(out, "✓ Disabled agent %s\n", id.c_str());
  else if (cmd == "agent.kick")
    fprintf(out, get_bool(answer, "kicked", false) ? "✓ Kicked agent %s\n"
                                                   : "Agent %s was not connected\n",
            id.c_str());
  else fprintf(out, "✓ %s %s\n", cmd.c_str(), id.c_str());
}

void render_proxy_edit(const std::string& cmd, const Value& request, const Value& answer,
                       FILE* out) {
  std::string id = get_str(request, "id");
  if (cmd == "proxy.add") {
    if (get_bool(request, "test", true)) fprintf(out, "✓ Proxy connectivity test passed\n");
    fprintf(out, "✓ Proxy added with ID: %s\n", id.c_str());
  } else if (cmd == "proxy.del") {
    fprintf(out, "✓ Deleted proxy %s\n", id.c_str());
  } else if (cmd == "proxy.enable") {
    fprintf(out, "✓ Enabled proxy %s\n", id.c_str());
  } else if (cmd == "proxy.disable") {
    fprintf(out, "✓ Disabled proxy %s\n", id.c_str());
  } else if (cmd == "proxy.test") {
    fprintf(out, "✓ Proxy %s is %s\n", id.c_str(), get_str(answer, "result", "up").c_str());
  } else {
    fprintf(out, "✓ %s %s\n", cmd.c_str(), id.c_str());
  }
}

}  // namespace up::ctl
