// users.json, external_proxy.json and agents_file written back after live edits, in the shapes
// the loaders read (a written file parses to the same records). One record per block, lists of
// names on one line, so a diff of two versions shows which user or proxy changed.
#include "config/rapidjson.h"

#include <rapidjson/prettywriter.h>

#include "config/on_failure.h"
#include "uringproxy/config.h"

namespace up {

namespace {

// A JSON string literal, escaped by rapidjson.
std::string json_string(const std::string& s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string(buf.GetString(), buf.GetSize());
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + json_string(items[i]);
  return out + "]";
}

// The members of one record, written as an indented block.
class Record {
 public:
  void raw(const char* key, const std::string& json) {
    members_.push_back(json_string(key) + ": " + json);
  }
  void str(const char* key, const std::string& v) { raw(key, json_string(v)); }
  void num(const char* key, uint64_t v) { raw(key, std::to_string(v)); }
  void boolean(const char* key, bool v) { raw(key, v ? "true" : "false"); }
  void list(const char* key, const std::vector<std::string>& v) { raw(key, json_list(v)); }

  std::string block(const char* indent) const {
    std::string out = std::string(indent) + "{\n";
    for (size_t i = 0; i < members_.size(); ++i)
      out += std::string(indent) + "  " + members_[i] + (i + 1 < members_.size() ? ",\n" : "\n");
    return out + indent + "}";
  }
  std::string inline_object() const {
    std::string out = "{";
    for (size_t i = 0; i < members_.size(); ++i) out += (i ? ", " : "") + members_[i];
    return out + "}";
  }

 private:
  std::vector<std::string> members_;
};

// The file around `n` record blocks, appended to `out`; block(i, out) appends the i-th.
template <typename Block>
void frame(const char* key, size_t n, Block&& block, std::string& out) {
  out += "{\n  " + json_string(key) + ": [";
  if (n == 0) {
    out += "]\n}\n";
    return;
  }
  out += "\n";
  for (size_t i = 0; i < n; ++i) {
    block(i, out);
    out += i + 1 < n ? ",\n" : "\n";
  }
  out += "  ]\n}\n";
}

std::string document(const char* key, const std::vector<Record>& records) {
  std::string out;
  frame(key, records.size(), [&](size_t i, std::string& o) { o += records[i].block("    "); },
        out);
  return out;
}

Record user_record(const User& u) {
  Record r;
  r.str("username", u.username);
  r.str("password", u.password_hash);
  if (!u.uuid.empty()) r.str("uuid", u.uuid);
  if (!u.email.empty()) r.str("email", u.email);
  r.raw("external_proxy_id", u.external_proxy_id ? json_string(*u.external_proxy_id) : "null");
  if (u.groups) r.list("groups", *u.groups);
  r.boolean("enabled", u.enabled);
  // Written exactly when the user has one: 0 (unlimited) differs from absent (the default).
  if (u.max_connections) r.num("max_connections", *u.max_connections);
  if (u.bandwidth_bps) r.num("bandwidth_bps", *u.bandwidth_bps);
  if (!u.allow.empty()) r.list("allow", u.allow);
  if (!u.deny.empty()) r.list("deny", u.deny);
  if (u.quota_bytes) r.num("quota_bytes", u.quota_bytes);
  if (u.quota_period != QuotaPeriod::none) r.str("quota_period", to_string(u.quota_period));
  return r;
}

Record proxy_record(const UpstreamProxy& p) {
  Record r;
  r.str("id", p.id);
  if (!p.name.empty()) r.str("name", p.name);
  r.str("type", to_string(p.type));
  r.str("address", p.address);
  r.num("port", p.port);
  if (!p.username.empty()) r.str("username", p.username);
  if (!p.password.empty()) r.str("password", p.password);
  r.boolean("enabled", p.enabled);
  if (!p.group.empty()) r.str("group", p.group);
  bool tls_type = p.type == UpstreamType::socks5s || p.type == UpstreamType::https;
  // server_name defaults to the address; write it only when it says something else.
  bool custom_name = !p.tls.server_name.empty() && p.tls.server_name != p.address;
  if (tls_type && (custom_name || !p.tls.verify || !p.tls.ca_file.empty())) {
    Record tls;
    if (custom_name) tls.str("server_name", p.tls.server_name);
    if (!p.tls.verify) tls.boolean("verify", false);
    if (!p.tls.ca_file.empty()) tls.str("ca_file", p.tls.ca_file);
    r.raw("tls", tls.inline_object());
  }
  if (p.on_failure.kind != OnFailure::Kind::unset)
    r.str("on_failure", config::on_failure_text(p.on_failure));
  return r;
}

}  // namespace

std::string users_to_json(const std::vector<User>& users) {
  std::vector<Record> records;
  records.reserve(users.size());
  for (const User& u : users) records.push_back(user_record(u));
  return document("users", records);
}

std::string user_json_record(const User& u) { return user_record(u).block("    "); }

void users_json_from_records(const std::vector<std::string>& records, std::string& out) {
  size_t total = 64;
  for (const auto& r : records) total += r.size() + 2;
  out.clear();  // keeps the caller's buffer: no fresh pages for a 20 MB file each time
  if (out.capacity() < total) out.reserve(total + total / 8);  // room for the next edits
  frame("users", records.size(), [&](size_t i, std::string& o) { o += records[i]; }, out);
}

std::string proxies_to_json(const std::vector<UpstreamProxy>& proxies) {
  std::vector<Record> records;
  records.reserve(proxies.size());
  for (const UpstreamProxy& p : proxies) records.push_back(proxy_record(p));
  return document("proxies", records);
}

std::string agents_to_json(const std::vector<Agent>& agents) {
  rapidjson::StringBuffer sb;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(sb);
  w.SetIndent(' ', 2);
  w.StartObject();
  w.Key("agents");
  w.StartArray();
  for (const Agent& a : agents) {
    w.StartObject();
    w.Key("id");
    w.String(a.id.c_str());
    w.Key("secret");
    w.String(a.secret_hash.c_str());
    w.Key("group");
    w.String(a.group.c_str());
    w.Key("enabled");
    w.Bool(a.enabled);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(sb.GetString()) + "\n";
}

}  // namespace up
