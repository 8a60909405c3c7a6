// agents_file (docs/configuration.md#agents) to Agent records: the reverse agents a gateway
// accepts. The secret is a crypt(3) hash and never appears in a message.
#include <map>

#include "config/crypt_hash.h"
#include "config/json_reader.h"
#include "proto/agent_frame.h"
#include "uringproxy/config.h"

namespace up {

namespace {

using config::FileDiagnostics;
using config::ObjectReader;
using config::quote;

// Messages about agents[i] name the agent by its id when it has a valid one.
std::string agent_path(const rapidjson::Value& entry, size_t i) {
  std::string where = config::index_path("agents", i);
  auto n = entry.FindMember("id");
  if (n != entry.MemberEnd() && n->value.IsString()) {
    std::string id(n->value.GetString(), n->value.GetStringLength());
    if (agent::valid_agent_id(id)) return "agent " + quote(id) + " (" + where + ")";
  }
  return where;
}

bool read_agent(ObjectReader& r, Agent& a) {
  size_t errors = r.diag().error_count();
  if (r.get_string("id", a.id, true, true) && !agent::valid_agent_id(a.id)) {
    r.error("id", quote(a.id) + " is not an agent id (1-64 letters, digits, '-', '_' or '.')");
    a.id.clear();
  }
  const rapidjson::Value* secret = r.find("secret");
  if (secret == nullptr) {
    r.error("secret", "is required (a crypt(3) hash of the agent's secret: use openssl passwd -6)");
  } else if (!secret->IsString()) {
    r.error("secret", std::string("must be a crypt(3) hash string, not ") +
                          config::json_type_name(*secret));
  } else {
    std::string hash(secret->GetString(), secret->GetStringLength());
    if (!config::is_crypt_hash(hash))
      r.error("secret", "not a crypt(3) hash (use openssl passwd -6; the agent keeps the "
                        "secret itself in its secret_file)");
    else
      a.secret_hash = std::move(hash);
  }
  if (r.get_string("group", a.group, true, true) &&
      (a.group.empty() ||
       a.group.find_first_of(std::string(" \t\r\n:.\0", 7)) != std::string::npos)) {
    r.error("group", quote(a.group) + " is not a group name (not empty; no '.', ':' or "
                                      "whitespace: it follows the '.' in \"user.group\")");
  }
  r.get_bool("enabled", a.enabled);
  r.finish();
  return r.diag().error_count() == errors;
}

}  // namespace

bool parse_agents(const std::string& text, const std::string& path, std::vector<Agent>& out,
                  Diagnostics& diag, std::vector<std::string>* skipped) {
  FileDiagnostics fd(path, diag);
  size_t errors_before = diag.errors.size();
  out.clear();
  rapidjson::Document doc;
  const rapidjson::Value* arr = config::parse_json_list(text, fd, doc, "agents");
  if (arr == nullptr) return false;

  std::map<std::string, std::string> ids;  // -> where it was first seen
  for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
    const rapidjson::Value& v = (*arr)[i];
    if (!v.IsObject()) {
      fd.error(config::index_path("agents", i),
               std::string("must be an object {\"id\", \"secret\", \"group\", \"enabled\"}, not ") +
                   config::json_type_name(v));
      config::move_errors_since(diag, diag.errors.size() - 1, skipped);
      continue;
    }
    std::string where = agent_path(v, i);
    size_t entry_errors = diag.errors.size();
    ObjectReader r(fd, v, where);
    Agent a;
    bool ok = read_agent(r, a);
    if (!a.id.empty()) {
      auto [it, fresh] = ids.emplace(a.id, where);
      if (!fresh) {
        fd.error(where + ".id", "is already " + it->second + "; agent ids must be unique");
        ok = false;
      }
    }
    if (ok)
      out.push_back(std::move(a));
    else
      config::move_errors_since(diag, entry_errors, skipped);
  }
  return diag.errors.size() == errors_before;
}

}  // namespace up
