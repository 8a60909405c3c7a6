// set-proxy, show-proxy and list-proxy-assignments, in the seed's shapes:
//   ✓ Updated user alice: external_proxy_id = proxy-us-east
//   User: alice (alice@vless.local) / External Proxy: ... / Proxy Type: ... / Proxy Address: ...
//   USER  PROXY ID  PROXY NAME  TYPE  STATUS, with (none) / Direct routing / - for direct users.
#include "ctl/format.h"
#include "ctl/json_get.h"
#include "ctl/render_parts.h"
#include "ctl/table.h"

namespace up::ctl {

void render_set_proxy(const Value& request, const Value& answer, FILE* out) {
  std::string name = get_str(answer, "username", get_str(request, "username"));
  const Value* id = member(answer, "external_proxy_id");
  if (!id) id = member(request, "proxy");
  if (id && id->IsString()) {
    std::string proxy(id->GetString(), id->GetStringLength());
    fprintf(out, "✓ Updated user %s: external_proxy_id = %s\n", name.c_str(), proxy.c_str());
    fprintf(out, "✓ User %s will now route through %s\n", name.c_str(), proxy.c_str());
  } else {
    fprintf(out, "✓ Updated user %s: external_proxy_id = null\n", name.c_str());
    fprintf(out, "✓ User %s will now use direct routing\n", name.c_str());
  }
}

void render_show_proxy(const Value& request, const Value& answer, FILE* out) {
  std::string name = get_str(answer, "username", get_str(request, "username"));
  std::string email = get_str(answer, "email");
  if (email.empty())
    fprintf(out, "User: %s\n", name.c_str());
  else
    fprintf(out, "User: %s (%s)\n", name.c_str(), email.c_str());
  std::string id = get_str(answer, "external_proxy_id");
  const Value* p = member(answer, "proxy");
  if (id.empty() && p && p->IsObject()) id = get_str(*p, "id");
  if (id.empty()) {
    fprintf(out, "External Proxy: (none)\n");
    fprintf(out, "Routing: Direct routing\n");
    return;
  }
  if (!p || !p->IsObject()) {
    fprintf(out, "External Proxy: %s (not in the proxies file)\n", id.c_str());
    return;
  }
  std::string pname = get_str(*p, "name");
  if (pname.empty())
    fprintf(out, "External Proxy: %s\n", id.c_str());
  else
    fprintf(out, "External Proxy: %s (%s)\n", id.c_str(), pname.c_str());
  fprintf(out, "Proxy Type: %s\n", or_dash(*p, "type").c_str());
  fprintf(out, "Proxy Address: %s\n",
          host_port(get_str(*p, "address"), get_u64(*p, "port")).c_str());
  std::string group = get_str(*p, "group");
  if (!group.empty()) fprintf(out, "Proxy Group: %s\n", group.c_str());
  fprintf(out, "Proxy Status: %s\n", proxy_status(*p).c_str());
}

void render_assignments(const Value& answer, FILE* out) {
  Table t({"USER", "PROXY ID", "PROXY NAME", "TYPE", "STATUS"});
  const Value* rows = member(answer, "assignments");
  if (rows && rows->IsArray()) {
    for (const auto& a : rows->GetArray()) {
      std::string user = get_str(a, "username");
      std::string id = get_str(a, "external_proxy_id");
      if (id.empty())
        t.add({user, "(none)", "Direct routing", "-", "-"});
      else
        t.add({user, id, or_dash(a, "name"), or_dash(a, "type"), proxy_status(a)});
    }
  }
  t.print(out);
}

}  // namespace up::ctl
