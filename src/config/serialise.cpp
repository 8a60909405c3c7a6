// users.json and external_proxy.json written back after live edits, in the shapes the loaders
// read (a written file parses to the same records).
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include "config/on_failure.h"
#include "uringproxy/config.h"

namespace up {

namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void key(Writer& w, const char* k) { w.Key(k); }
void str(Writer& w, const std::string& s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
void field(Writer& w, const char* k, const std::string& s) {
  key(w, k);
  str(w, s);
}
void list(Writer& w, const char* k, const std::vector<std::string>& items) {
  key(w, k);
  w.StartArray();
  for (const std::string& s : items) str(w, s);
  w.EndArray();
}

void setup(Writer& w) {
  w.SetIndent(' ', 2);
  w.SetFormatOptions(rapidjson::kFormatSingleLineArray);
}

void write_user(Writer& w, const User& u) {
  w.StartObject();
  field(w, "username", u.username);
  field(w, "password", u.password_hash);
  if (!u.uuid.empty()) field(w, "uuid", u.uuid);
  if (!u.email.empty()) field(w, "email", u.email);
  key(w, "external_proxy_id");
  if (u.external_proxy_id) {
    str(w, *u.external_proxy_id);
  } else {
    w.Null();
  }
  if (u.groups) list(w, "groups", *u.groups);
  key(w, "enabled");
  w.Bool(u.enabled);
  if (u.max_connections != 0) {
    key(w, "max_connections");
    w.Uint(u.max_connections);
  }
  if (u.bandwidth_bps != 0) {
    key(w, "bandwidth_bps");
    w.Uint64(u.bandwidth_bps);
  }
  if (!u.allow.empty()) list(w, "allow", u.allow);
  if (!u.deny.empty()) list(w, "deny", u.deny);
  w.EndObject();
}

void write_proxy(Writer& w, const UpstreamProxy& p) {
  w.StartObject();
  field(w, "id", p.id);
  if (!p.name.empty()) field(w, "name", p.name);
  field(w, "type", to_string(p.type));
  field(w, "address", p.address);
  key(w, "port");
  w.Uint(p.port);
  if (!p.username.empty()) field(w, "username", p.username);
  if (!p.password.empty()) field(w, "password", p.password);
  key(w, "enabled");
  w.Bool(p.enabled);
  if (!p.group.empty()) field(w, "group", p.group);
  bool tls_type = p.type == UpstreamType::socks5s || p.type == UpstreamType::https;
  bool custom_name = !p.tls.server_name.empty() && p.tls.server_name != p.address;
  if (tls_type && (custom_name || !p.tls.verify || !p.tls.ca_file.empty())) {
    key(w, "tls");
    w.StartObject();
    if (custom_name) field(w, "server_name", p.tls.server_name);
    if (!p.tls.verify) {
      key(w, "verify");
      w.Bool(false);
    }
    if (!p.tls.ca_file.empty()) field(w, "ca_file", p.tls.ca_file);
    w.EndObject();
  }
  if (p.on_failure.kind != OnFailure::Kind::unset)
    field(w, "on_failure", config::on_failure_text(p.on_failure));
  w.EndObject();
}

}  // namespace

std::string users_to_json(const std::vector<User>& users) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  setup(w);
  w.StartObject();
  key(w, "users");
  w.StartArray();
  for (const User& u : users) write_user(w, u);
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

std::string proxies_to_json(const std::vector<UpstreamProxy>& proxies) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  setup(w);
  w.StartObject();
  key(w, "proxies");
  w.StartArray();
  for (const UpstreamProxy& p : proxies) write_proxy(w, p);
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

}  // namespace up
