// usage, quota set and quota reset:
//   USER   USED_BYTES   QUOTA_BYTES   PERIOD   RESETS_AT
//   alice  1048576      10485760      month    2024-08-01T00:00:00Z
#include "ctl/json_get.h"
#include "ctl/render_parts.h"
#include "ctl/table.h"

namespace up::ctl {

void render_usage(const Value& answer, FILE* out) {
  Table t({"USER", "USED_BYTES", "QUOTA_BYTES", "PERIOD", "RESETS_AT"});
  const Value* rows = member(answer, "usage");
  if (rows && rows->IsArray()) {
    for (const auto& u : rows->GetArray()) {
      uint64_t quota = get_u64(u, "quota_bytes");
      t.add({get_str(u, "user"), std::to_string(get_u64(u, "used_bytes")),
             quota ? std::to_string(quota) : "none", or_dash(u, "period"),
             or_dash(u, "resets_at")});
    }
  }
  t.print(out);
}

void render_quota_edit(const std::string& cmd, const Value& request, const Value& answer,
                       FILE* out) {
  std::string name = get_str(answer, "user", get_str(request, "username"));
  if (cmd == "quota.reset") {
    fprintf(out, "✓ Usage of %s this period reset to 0 bytes\n", name.c_str());
    return;
  }
  uint64_t quota = get_u64(answer, "quota_bytes");
  if (quota == 0)
    fprintf(out, "✓ User %s has no quota\n", name.c_str());
  else
    fprintf(out, "✓ Quota of %s: %llu bytes per %s (UTC)\n", name.c_str(),
            static_cast<unsigned long long>(quota), get_str(answer, "period").c_str());
}

}  // namespace up::ctl
