// users.json (docs/configuration.md#usersjson) to User records. The password is a crypt(3) hash and never appears in
// a message.
#include <deque>
#include <string_view>
#include <unordered_map>

#include "config/acl_syntax.h"
#include "config/crypt_hash.h"
#include "config/json_reader.h"
#include "config/user_fields.h"
#include "uringproxy/config.h"

namespace up {

namespace config {

std::string check_username(const std::string& name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > 64) return "is longer than 64 bytes; choose a shorter name";
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '.')
      return quote(name) + " contains '.', which separates the user from a group "
                            "(\"alice.us-east\"); choose a name without it";
    if (c == ':')
      return quote(name) + " contains ':', which HTTP Basic auth cannot carry; choose a name "
                            "without it";
    if (u <= 0x20 || u == 0x7f)
      return quote(name) + " contains whitespace or a control character; choose a name "
                            "without it";
  }
  return "";
}

bool normalise_uuid(const std::string& in, std::string& out) {
  if (in.size() != 36) return false;
  std::string r = in;
  for (size_t i = 0; i < r.size(); ++i) {
    char& c = r[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
      continue;
    }
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  out = std::move(r);
  return true;
}

}  // namespace config

namespace {

using config::FileDiagnostics;
using config::ObjectReader;
using config::quote;

// Fields other tools (the seed's user database) write that mean nothing here.
constexpr const char* kHarmlessUserFields[] = {"created_at", "connection_id"};

std::string acl_check(const std::string& s) { return config::check_acl_entry(s); }

std::string group_check(const std::string& s) {
  if (s.empty() || s.find_first_of(std::string(" \t\r\n:.\0", 7)) != std::string::npos)
    return quote(s) + " is not a group name (no '.', ':' or whitespace)";
  return "";
}

// Messages about users[i] name the user when the entry has a usable username (an operator
// with thousands of users searches by name), else only the index.
std::string user_path(const rapidjson::Value& entry, size_t i) {
  auto n = entry.FindMember("username");
  if (n != entry.MemberEnd() && n->value.IsString()) {
    std::string name(n->value.GetString(), n->value.GetStringLength());
    if (config::check_username(name).empty()) return user_where(name, i);
  }
  return config::index_path("users", i);
}

bool read_user(ObjectReader& r, User& u) {
  size_t errors = r.diag().error_count();
  std::string name;
  if (r.get_string("username", name, true, true)) {
    std::string why = config::check_username(name);
    if (!why.empty()) {
      r.error("username", why);
    } else {
      u.username = name;
    }
  }
  const rapidjson::Value* pw = r.find("password");
  if (pw == nullptr) {
    r.error("password", "is required (a crypt(3) hash: use openssl passwd -6 or uringproxyctl user add)");
  } else if (!pw->IsString()) {
    r.error("password", std::string("must be a crypt(3) hash string, not ") +
                            config::json_type_name(*pw));
  } else {
    std::string hash(pw->GetString(), pw->GetStringLength());
    if (!config::is_crypt_hash(hash)) {
      r.error("password",
              "not a crypt(3) hash (use openssl passwd -6 or uringproxyctl user add)");
    } else {
      u.password_hash = std::move(hash);
    }
  }
  std::string uuid;
  if (r.get_string("uuid", uuid, false, true) && !uuid.empty()) {
    if (!config::normalise_uuid(uuid, u.uuid))
      r.error("uuid", quote(uuid) + " is not a UUID (8-4-4-4-12 hex digits, e.g. "
                                     "\"a1b2c3d4-e5f6-7890-1234-567890abcdef\"; uuidgen makes one)");
  }
  r.get_string("email", u.email, false, true);
  if (const rapidjson::Value* p = r.find("external_proxy_id")) {
    if (p->IsNull()) {
      u.external_proxy_id.reset();
    } else if (!p->IsString() || p->GetStringLength() == 0) {
      r.error("external_proxy_id", "must be the id of a proxy in the proxies file, or null for "
                                   "direct");
    } else {
      u.external_proxy_id = std::string(p->GetString(), p->GetStringLength());
    }
  }
  if (r.has("groups")) {
    std::vector<std::string> groups;
    if (r.get_string_array("groups", groups, group_check)) u.groups = std::move(groups);
  } else {
    r.find("groups");
  }
  r.get_bool("enabled", u.enabled);
  // Kept absent when absent: an explicit 0 (unlimited) must not turn into "use the default".
  uint64_t n = 0;
  if (r.get_uint("max_connections", n, 0, UINT32_MAX)) u.max_connections = static_cast<uint32_t>(n);
  if (r.get_uint("bandwidth_bps", n, 0, UINT64_MAX)) u.bandwidth_bps = n;
  r.get_uint("quota_bytes", u.quota_bytes, 0, UINT64_MAX);
  std::string period;
  if (r.get_string("quota_period", period, false, true) &&
      !parse_quota_period(period, u.quota_period))
    r.error("quota_period", quote(period) + " is not a quota period (\"day\", \"week\" or "
                                             "\"month\"; each starts at 00:00 UTC)");
  else if (u.quota_bytes && u.quota_period == QuotaPeriod::none && !r.has("quota_period"))
    r.error("quota_period", "is required with quota_bytes (\"day\", \"week\" or \"month\")");
  r.get_string_array("allow", u.allow, acl_check);
  r.get_string_array("deny", u.deny, acl_check);
  for (const char* f : kHarmlessUserFields) r.ignore(f);
  r.finish();
  return r.diag().error_count() == errors;
}

}  // namespace

bool parse_users(const std::string& text, const std::string& path, std::vector<User>& out,
                 Diagnostics& diag, std::vector<std::string>* skipped) {
  FileDiagnostics fd(path, diag);
  size_t errors_before = diag.errors.size();
  out.clear();
  rapidjson::Document doc;
  const rapidjson::Value* arr = config::parse_json_list(text, fd, doc, "users");
  if (arr == nullptr) return false;

  // Name and uuid -> the index of the entry that has it first. Keys view the loaded users'
  // strings (reserved: never moved); the messages are made only for a duplicate.
  std::unordered_map<std::string_view, rapidjson::SizeType> names, uuids;
  std::deque<std::string> kept_keys;  // those of entries not loaded (a deque never moves them)
  names.reserve(arr->Size());
  out.reserve(arr->Size());
  for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
    const rapidjson::Value& v = (*arr)[i];
    if (!v.IsObject()) {
      fd.error(config::index_path("users", i),
               std::string("must be an object {\"username\", \"password\", ...}, not ") +
                   config::json_type_name(v));
      config::move_errors_since(diag, diag.errors.size() - 1, skipped);
      continue;
    }
    std::string where = user_path(v, i);
    size_t entry_errors = diag.errors.size();
    ObjectReader r(fd, v, where);
    User u;
    bool ok = read_user(r, u);
    auto first_seen = [&](rapidjson::SizeType at) { return user_path((*arr)[at], at); };
    if (auto it = names.find(u.username); !u.username.empty() && it != names.end()) {
      fd.error(where + ".username", "is already " + first_seen(it->second) +
                                        "; usernames must be unique");
      ok = false;
    }
    if (auto it = uuids.find(u.uuid); !u.uuid.empty() && it != uuids.end()) {
      fd.error(where + ".uuid", "is the same as " + first_seen(it->second) +
                                    ".uuid; each user needs its own (uuidgen makes one)");
      ok = false;
    }
    if (!ok) {
      // Still the first holder of its name or uuid for the entries after it.
      if (!u.username.empty() && !names.count(u.username)) {
        kept_keys.push_back(u.username);
        names.emplace(kept_keys.back(), i);
      }
      if (!u.uuid.empty() && !uuids.count(u.uuid)) {
        kept_keys.push_back(u.uuid);
        uuids.emplace(kept_keys.back(), i);
      }
      config::move_errors_since(diag, entry_errors, skipped);
      continue;
    }
    out.push_back(std::move(u));
    const User& in = out.back();
    names.emplace(in.username, i);
    if (!in.uuid.empty()) uuids.emplace(in.uuid, i);
  }
  return diag.errors.size() == errors_before;
}

}  // namespace up
