// status, reload, stats, connections and kick.
#include "ctl/format.h"
#include "ctl/json_get.h"
#include "ctl/render_parts.h"
#include "ctl/table.h"

namespace up::ctl {
namespace {

// Every scalar member but "ok" as "key: value", with human forms added for known units.
void key_values(const Value& answer, FILE* out) {
  for (const auto& m : answer.GetObject()) {
    std::string key(m.name.GetString(), m.name.GetStringLength());
    if (key == "ok" || m.value.IsArray() || m.value.IsObject()) continue;
    std::string text = scalar_text(m.value);
    if (m.value.IsUint64()) {
      uint64_t n = m.value.GetUint64();
      if (key.size() > 2 && key.compare(key.size() - 2, 2, "_s") == 0 && n >= 60)
        text += " (" + human_duration(n) + ")";
      else if (key.rfind("bytes", 0) == 0 && n >= 1024)
        text += " (" + human_bytes(n) + ")";
    }
    fprintf(out, "%s: %s\n", key.c_str(), text.c_str());
  }
}

}  // namespace

void render_status(const Value& answer, FILE* out) { key_values(answer, out); }

void render_reload(const Value& answer, FILE* out) {
  if (has_number(answer, "generation"))
    fprintf(out, "✓ Reloaded: configuration generation %llu\n",
            static_cast<unsigned long long>(get_u64(answer, "generation")));
  else
    fprintf(out, "✓ Reloaded\n");
}

void render_stats(const Value& answer, FILE* out) {
  key_values(answer, out);
  const Value* users = member(answer, "users");
  if (!users || !users->IsArray() || users->Empty()) return;
  fputc('\n', out);
  Table t({"USER", "ACTIVE", "TOTAL", "UP", "DOWN"});
  for (const auto& u : users->GetArray()) {
    t.add({get_str(u, "user"), std::to_string(get_u64(u, "connections_active")),
           std::to_string(get_u64(u, "connections_total")), human_bytes(get_u64(u, "bytes_up")),
           human_bytes(get_u64(u, "bytes_down"))});
  }
  t.print(out);
}

void render_connections(const Value& answer, FILE* out) {
  Table t({"USER", "CLIENT", "TARGET", "ROUTE", "UP", "DOWN", "AGE"});
  const Value* rows = member(answer, "connections");
  if (rows && rows->IsArray()) {
    for (const auto& c : rows->GetArray()) {
      std::string user = or_dash(c, "user");
      std::string group = get_str(c, "group");
      if (!group.empty()) user += "." + group;
      t.add({user, or_dash(c, "client"), or_dash(c, "target"), or_dash(c, "route"),
             human_bytes(get_u64(c, "bytes_up")), human_bytes(get_u64(c, "bytes_down")),
             human_duration(get_u64(c, "age_s"))});
    }
  }
  t.print(out);
}

void render_kick(const Value& request, const Value& answer, FILE* out) {
  uint64_t n = get_u64(answer, "closed");
  fprintf(out, "✓ Closed %llu %s of %s\n", static_cast<unsigned long long>(n),
          n == 1 ? "tunnel" : "tunnels", get_str(request, "username").c_str());
}

}  // namespace up::ctl
