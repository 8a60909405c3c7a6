// Control requests (docs/control-protocol.md): one JSON object in, one out.
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "config/user_fields.h"
#include "control/atomic_file.h"
#include "control/control_request.h"
#include "control/management.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/worker.h"
#include "route/snapshot_store.h"
#include "upstream/tls_layer.h"
#include "upstream/upstream_probe.h"

namespace up {

namespace {

// A random (version 4) UUID, for `user add` without --uuid.
std::string random_uuid() {
  uint8_t b[16];
  if (RAND_bytes(b, sizeof b) != 1) return std::string();
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  char out[37];
  snprintf(out, sizeof out,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return out;
}

using Json = rapidjson::Writer<rapidjson::StringBuffer>;

std::string refuse(const std::string& why, const std::vector<std::string>& errors = {}) {
  rapidjson::StringBuffer sb;
  Json w(sb);
  w.StartObject();
  w.Key("ok");
  w.Bool(false);
  w.Key("error");
  w.String(why.c_str());
  if (!errors.empty()) {
    w.Key("errors");
    w.StartArray();
    for (const auto& e : errors) w.String(e.c_str());
    w.EndArray();
  }
  w.EndObject();
  return sb.GetString();
}

// Builds {"ok":true, ...} with the fields `body` writes.
template <typename F>
std::string answer(F&& body) {
  rapidjson::StringBuffer sb;
  Json w(sb);
  w.StartObject();
  w.Key("ok");
  w.Bool(true);
  body(w);
  w.EndObject();
  return sb.GetString();
}

void put(Json& w, const char* k, const std::string& v) {
  w.Key(k);
  w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
}
void put(Json& w, const char* k, uint64_t v) {
  w.Key(k);
  w.Uint64(v);
}
void put_opt(Json& w, const char* k, const std::optional<std::string>& v) {
  w.Key(k);
  if (v)
    w.String(v->c_str());
  else
    w.Null();
}

std::string str_arg(const rapidjson::Value& a, const char* k) {
  auto it = a.FindMember(k);
  return it != a.MemberEnd() && it->value.IsString() ? it->value.GetString() : std::string();
}
bool has_str(const rapidjson::Value& a, const char* k) {
  auto it = a.FindMember(k);
  return it != a.MemberEnd() && it->value.IsString();
}

// yescrypt with libxcrypt's default cost, like mkpasswd -m yescrypt.
std::string hash_password(const std::string& pw) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn("$y$", 0, nullptr, 0, salt, sizeof salt)) return "";
  auto data = std::make_unique<crypt_data>();
  const char* h = crypt_rn(pw.c_str(), salt, data.get(), sizeof *data);
  std::string out = h && h[0] == '$' ? h : "";
  OPENSSL_cleanse(data.get(), sizeof *data);
  return out;
}

const char* type_name(UpstreamType t) { return to_string(t); }

}  // namespace

std::string Management::handle(const std::string& line) {
  std::string error;
  std::optional<ControlRequest> req = parse_control_request(line, error);
  if (!req) return refuse(error);
  const std::string& cmd = req->cmd;
  const Args& d = req->args;
  if (cmd == "status") return cmd_status();
  if (cmd == "reload") return cmd_reload();
  if (cmd == "stats") return cmd_stats();
  if (cmd == "user.list") return cmd_user_list();
  if (cmd == "user.add" || cmd == "user.del" || cmd == "user.passwd" || cmd == "user.enable" ||
      cmd == "user.disable")
    return cmd_user_edit(cmd, d);
  if (cmd == "set-proxy") return cmd_set_proxy(d);
  if (cmd == "show-proxy") return cmd_show_proxy(d);
  if (cmd == "list-proxy-assignments") return cmd_list_assignments();
  if (cmd == "proxy.list") return cmd_proxy_list();
  if (cmd == "proxy.add" || cmd == "proxy.del" || cmd == "proxy.enable" || cmd == "proxy.disable")
    return cmd_proxy_edit(cmd, d);
  if (cmd == "proxy.test") return cmd_proxy_test(d);
  if (cmd == "connections") return cmd_connections(d);
  if (cmd == "kick") return cmd_kick(d);
  return refuse("unknown command \"" + cmd + "\" (see docs/control-protocol.md)");
}

std::string Management::cmd_status() {
  uint64_t active = 0;
  for (uint64_t n : ask_workers<uint64_t>([](Worker& w) { return w.stats().connections_active; }))
    active += n;
  return answer([&](Json& w) {
    put(w, "version", std::string(URINGPROXY_VERSION));
    put(w, "uptime_s", (monotonic_ms() - started_ms_) / 1000);
    put(w, "workers", rt_.workers.size());
    put(w, "generation", generation_);
    put(w, "connections_active", active);
  });
}

std::string Management::cmd_reload() {
  std::vector<std::string> errors;
  if (!reload(errors)) return refuse("reload refused; the running configuration is unchanged", errors);
  return answer([&](Json& w) { put(w, "generation", generation_); });
}

std::string Management::cmd_stats() {
  WorkerStats s = collect_stats();
  return answer([&](Json& w) {
    put(w, "connections_total", s.connections_total);
    put(w, "connections_active", s.connections_active);
    put(w, "bytes_up", s.bytes_up);
    put(w, "bytes_down", s.bytes_down);
    put(w, "auth_failures", s.auth_failures);
    w.Key("users");
    w.StartArray();
    std::vector<std::string> names;
    for (const auto& [name, t] : s.users) names.push_back(name);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const UserTally& t = s.users[name];
      w.StartObject();
      put(w, "user", name);
      put(w, "connections_active", t.connections_active);
      put(w, "connections_total", t.connections_total);
      put(w, "bytes_up", t.bytes_up);
      put(w, "bytes_down", t.bytes_down);
      w.EndObject();
    }
    w.EndArray();
  });
}

std::string Management::cmd_user_list() {
  return answer([&](Json& w) {
    w.Key("users");
    w.StartArray();
    for (const User& u : current_.users) {
      w.StartObject();
      put(w, "username", u.username);
      w.Key("enabled");
      w.Bool(u.enabled);
      put_opt(w, "external_proxy_id", u.external_proxy_id);
      w.Key("groups");
      if (u.groups) {
        w.StartArray();
        for (const auto& g : *u.groups) w.String(g.c_str());
        w.EndArray();
      } else {
        w.Null();
      }
      put(w, "uuid", u.uuid);
      put(w, "email", u.email);
      // The limits in force (0 = unlimited), and whether the user's own field or the default
      // in limits set them.
      UserLimits lim = effective_limits(u, current_.config.limits);
      put(w, "max_connections", lim.max_connections);
      put(w, "max_connections_from", std::string(u.max_connections ? "user" : "default"));
      put(w, "bandwidth_bps", lim.bandwidth_bps);
      put(w, "bandwidth_bps_from", std::string(u.bandwidth_bps ? "user" : "default"));
      w.EndObject();
    }
    w.EndArray();
  });
}

std::string Management::edit_users(const std::function<std::string(std::vector<User>&)>& edit) {
  ConfigSet next;
  Diagnostics d;
  if (!load_config_set(config_path_, next, d) || !d.ok())
    return refuse("the files on disk do not load; fix them (uringproxy --check) first", d.errors);
  if (next.config.users_file.empty()) return refuse("no users_file is configured");
  if (std::string why = edit(next.users); !why.empty()) return refuse(why);
  std::string text = users_to_json(next.users);
  // What we write must load: parse it back, and check its references, before writing.
  std::vector<User> check;
  Diagnostics cd;
  if (!parse_users(text, next.config.users_file, check, cd) || !cd.ok())
    return refuse("the edit would make users.json invalid", cd.errors);
  std::vector<std::string> errors;
  for (const User& u : next.users)
    if (u.external_proxy_id &&
        std::none_of(next.proxies.begin(), next.proxies.end(),
                     [&](const UpstreamProxy& p) { return p.id == *u.external_proxy_id; }))
      errors.push_back("user " + u.username + ": no upstream has id " + *u.external_proxy_id);
  if (!errors.empty()) return refuse("the edit names an unknown upstream", errors);
  auto snap = prepare(next, errors);
  if (!snap) return refuse("the edit does not load", errors);
  std::string err;
  if (!write_file_atomic(next.config.users_file, text, 0600, err)) return refuse(err);
  // commit() closes the tunnels of users deleted, disabled or given a new password.
  last_closed_ = commit(std::move(snap), std::move(next));
  return "";
}

std::string Management::cmd_user_edit(const std::string& cmd, const Args& a) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return refuse(cmd + " needs \"username\"");
  std::string hash;
  if (cmd == "user.add" || cmd == "user.passwd") {
    std::string pw = str_arg(a, "password");
    if (pw.empty()) return refuse(cmd + " needs a non-empty \"password\"");
    hash = hash_password(pw);
    OPENSSL_cleanse(pw.data(), pw.size());
    if (hash.empty()) return refuse("cannot hash the password (libcrypt yescrypt failed)");
  }
  last_closed_ = 0;
  std::string added_uuid;
  std::string r = edit_users(
      [&](std::vector<User>& users) -> std::string {
        auto it = std::find_if(users.begin(), users.end(),
                               [&](const User& u) { return u.username == name; });
        if (cmd == "user.add") {
          if (it != users.end()) return "user " + name + " already exists";
          if (std::string bad = config::check_username(name); !bad.empty())
            return "username: " + bad;
          User u;
          u.username = name;
          u.password_hash = hash;
          // The VLESS id: the one given, else a fresh random (version 4) one.
          std::string given = str_arg(a, "uuid");
          if (given.empty()) given = random_uuid();
          if (!config::normalise_uuid(given, u.uuid))
            return "uuid: \"" + given + "\" is not a UUID (8-4-4-4-12 hex digits)";
          for (const User& other : users)
            if (other.uuid == u.uuid) return "uuid " + u.uuid + " is already " + other.username + "'s";
          added_uuid = u.uuid;
          if (has_str(a, "proxy")) u.external_proxy_id = str_arg(a, "proxy");
          if (auto g = a.FindMember("groups"); g != a.MemberEnd() && g->value.IsArray()) {
            std::vector<std::string> groups;
            for (const auto& v : g->value.GetArray())
              if (v.IsString()) groups.push_back(v.GetString());
            if (!groups.empty()) u.groups = groups;
          }
          users.push_back(std::move(u));
          return "";
        }
        if (it == users.end()) return "no user " + name;
        if (cmd == "user.del") users.erase(it);
        if (cmd == "user.passwd") it->password_hash = hash;
        if (cmd == "user.enable") it->enabled = true;
        if (cmd == "user.disable") it->enabled = false;
        return "";
      });
  OPENSSL_cleanse(hash.data(), hash.size());
  if (!r.empty()) return r;
  UP_INFO("%s %s: generation %llu", cmd.c_str(), name.c_str(),
          static_cast<unsigned long long>(generation_));
  return answer([&](Json& w) {
    put(w, "generation", generation_);
    if (cmd != "user.add" && cmd != "user.enable") put(w, "closed", last_closed_);
    if (cmd == "user.add") put(w, "uuid", added_uuid);
  });
}

std::string Management::cmd_set_proxy(const Args& a) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return refuse("set-proxy needs \"username\"");
  std::optional<std::string> proxy;
  if (has_str(a, "proxy") && str_arg(a, "proxy") != "none") proxy = str_arg(a, "proxy");
  std::string r = edit_users(
      [&](std::vector<User>& users) -> std::string {
        auto it = std::find_if(users.begin(), users.end(),
                               [&](const User& u) { return u.username == name; });
        if (it == users.end()) return "no user " + name;
        if (proxy && std::none_of(current_.proxies.begin(), current_.proxies.end(),
                                  [&](const UpstreamProxy& p) { return p.id == *proxy; }))
          return "no upstream has id " + *proxy + " (uringproxyctl proxy list)";
        it->external_proxy_id = proxy;
        return "";
      });
  if (!r.empty()) return r;
  UP_INFO("set-proxy %s %s", name.c_str(), proxy ? proxy->c_str() : "none");
  return answer([&](Json& w) {
    put(w, "generation", generation_);
    put(w, "username", name);
    put_opt(w, "external_proxy_id", proxy);
  });
}

std::string Management::cmd_show_proxy(const Args& a) {
  std::string name = str_arg(a, "username");
  auto it = std::find_if(current_.users.begin(), current_.users.end(),
                         [&](const User& u) { return u.username == name; });
  if (it == current_.users.end()) return refuse("no user " + name);
  const Snapshot* s = snapshots_.current();
  return answer([&](Json& w) {
    put(w, "username", it->username);
    put(w, "email", it->email);
    put_opt(w, "external_proxy_id", it->external_proxy_id);
    w.Key("proxy");
    auto u = it->external_proxy_id ? s->find_upstream(*it->external_proxy_id) : nullptr;
    if (!u) {
      w.Null();
      return;
    }
    w.StartObject();
    put(w, "id", u->config.id);
    put(w, "name", u->config.name);
    put(w, "type", std::string(type_name(u->config.type)));
    put(w, "address", u->config.address);
    put(w, "port", u->config.port);
    w.Key("enabled");
    w.Bool(u->config.enabled);
    w.Key("up");
    w.Bool(u->health->is_up());
    put(w, "group", u->config.group);
    w.EndObject();
  });
}

std::string Management::cmd_list_assignments() {
  const Snapshot* s = snapshots_.current();
  return answer([&](Json& w) {
    w.Key("assignments");
    w.StartArray();
    for (const User& usr : current_.users) {
      w.StartObject();
      put(w, "username", usr.username);
      put_opt(w, "external_proxy_id", usr.external_proxy_id);
      auto u = usr.external_proxy_id ? s->find_upstream(*usr.external_proxy_id) : nullptr;
      put(w, "name", u ? u->config.name : std::string());
      put(w, "type", u ? std::string(type_name(u->config.type)) : std::string());
      w.Key("enabled");
      w.Bool(u ? u->config.enabled : false);
      w.Key("up");
      w.Bool(u ? u->health->is_up() : false);
      w.EndObject();
    }
    w.EndArray();
  });
}

std::string Management::cmd_proxy_list() {
  const Snapshot* s = snapshots_.current();
  return answer([&](Json& w) {
    w.Key("proxies");
    w.StartArray();
    for (const UpstreamProxy& p : current_.proxies) {
      auto u = s->find_upstream(p.id);
      w.StartObject();
      put(w, "id", p.id);
      put(w, "name", p.name);
      put(w, "type", std::string(type_name(p.type)));
      put(w, "address", p.address);
      put(w, "port", p.port);
      put(w, "username", p.username);
      w.Key("enabled");
      w.Bool(p.enabled);
      w.Key("up");
      w.Bool(u && u->health->is_up());
      put(w, "group", p.group);
      put(w, "active", u ? u->health->active.load() : 0);
      w.EndObject();
    }
    w.EndArray();
  });
}

std::string Management::edit_proxies(
    const std::function<std::string(std::vector<UpstreamProxy>&)>& edit) {
  ConfigSet next;
  Diagnostics d;
  if (!load_config_set(config_path_, next, d) || !d.ok())
    return refuse("the files on disk do not load; fix them (uringproxy --check) first", d.errors);
  if (next.config.proxies_file.empty())
    return refuse("no proxies_file is configured (add \"proxies_file\" to " + config_path_ + ")");
  if (std::string why = edit(next.proxies); !why.empty()) return refuse(why);
  std::string text = proxies_to_json(next.proxies);
  std::vector<UpstreamProxy> check;
  Diagnostics cd;
  if (!parse_proxies(text, next.config.proxies_file, check, cd) || !cd.ok())
    return refuse("the edit would make the proxies file invalid", cd.errors);
  std::vector<std::string> errors;
  auto snap = prepare(next, errors);
  if (!snap) return refuse("the edit does not load", errors);
  std::string err;
  if (!write_file_atomic(next.config.proxies_file, text, 0600, err)) return refuse(err);
  commit(std::move(snap), std::move(next));
  return "";
}

std::string Management::cmd_proxy_edit(const std::string& cmd, const Args& a) {
  std::string id = str_arg(a, "id");
  if (id.empty()) return refuse(cmd + " needs \"id\"");
  if (cmd == "proxy.add") {
    UpstreamProxy p;
    p.id = id;
    p.name = has_str(a, "name") ? str_arg(a, "name") : id;
    std::string type = str_arg(a, "type");
    if (type == "socks5") p.type = UpstreamType::socks5;
    else if (type == "socks5s") p.type = UpstreamType::socks5s;
    else if (type == "http") p.type = UpstreamType::http;
    else if (type == "https") p.type = UpstreamType::https;
    else return refuse("type must be socks5, socks5s, http or https");
    p.address = str_arg(a, "address");
    auto port = a.FindMember("port");
    if (p.address.empty() || port == a.MemberEnd() || !port->value.IsUint() ||
        port->value.GetUint() == 0 || port->value.GetUint() > 65535)
      return refuse("proxy.add needs \"address\" and a \"port\" from 1 to 65535");
    p.port = static_cast<uint16_t>(port->value.GetUint());
    p.username = str_arg(a, "username");
    p.password = str_arg(a, "password");
    p.group = str_arg(a, "group");
    bool test = true;
    if (auto t = a.FindMember("test"); t != a.MemberEnd() && t->value.IsBool())
      test = t->value.GetBool();
    if (test) {
      Upstream u;
      u.config = p;
      u.health = nullptr;
      if (p.type == UpstreamType::socks5s || p.type == UpstreamType::https) {
        std::string err;
        u.tls = make_client_tls_context(true, "", err);
        if (!u.tls) return refuse("tls: " + err);
      }
      std::string err = probe_upstream(u, current_.config.health_check.target,
                                       current_.config.health_check.timeout_ms);
      if (!err.empty())
        return refuse("probe failed: " + err + " (nothing written; --no-test adds it anyway)");
    }
    std::string r = edit_proxies([&](std::vector<UpstreamProxy>& ps) -> std::string {
      if (std::any_of(ps.begin(), ps.end(), [&](const UpstreamProxy& q) { return q.id == id; }))
        return "an upstream with id " + id + " already exists";
      ps.push_back(p);
      return "";
    });
    if (!r.empty()) return r;
  } else {
    std::string r = edit_proxies([&](std::vector<UpstreamProxy>& ps) -> std::string {
      auto it = std::find_if(ps.begin(), ps.end(), [&](const UpstreamProxy& q) { return q.id == id; });
      if (it == ps.end()) return "no upstream has id " + id;
      if (cmd == "proxy.del") {
        for (const User& u : current_.users)
          if (u.external_proxy_id == id)
            return "user " + u.username + " is routed through " + id +
                   " (uringproxyctl set-proxy " + u.username + " none first)";
        ps.erase(it);
      }
      if (cmd == "proxy.enable") it->enabled = true;
      if (cmd == "proxy.disable") it->enabled = false;
      return "";
    });
    if (!r.empty()) return r;
  }
  UP_INFO("%s %s: generation %llu", cmd.c_str(), id.c_str(),
          static_cast<unsigned long long>(generation_));
  return answer([&](Json& w) { put(w, "generation", generation_); });
}

std::string Management::cmd_proxy_test(const Args& a) {
  std::string id = str_arg(a, "id");
  auto u = snapshots_.current()->find_upstream(id);
  if (!u) return refuse("no upstream has id " + id);
  std::string err = probe_upstream(*u, current_.config.health_check.target,
                                   current_.config.health_check.timeout_ms);
  if (!err.empty()) return refuse("probe failed: " + err);
  return answer([&](Json& w) { put(w, "result", std::string("up")); });
}

std::string Management::cmd_connections(const Args& a) {
  auto conns = collect_connections(str_arg(a, "user"));
  return answer([&](Json& w) {
    w.Key("connections");
    w.StartArray();
    for (const ConnectionInfo& c : conns) {
      w.StartObject();
      put(w, "user", c.user);
      put(w, "group", c.group);
      put(w, "client", c.client);
      put(w, "target", c.target);
      put(w, "route", c.route);
      put(w, "bytes_up", c.bytes_up);
      put(w, "bytes_down", c.bytes_down);
      put(w, "age_s", c.age_s);
      w.EndObject();
    }
    w.EndArray();
  });
}

std::string Management::cmd_kick(const Args& a) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return refuse("kick needs \"username\"");
  if (std::none_of(current_.users.begin(), current_.users.end(),
                   [&](const User& u) { return u.username == name; }))
    return refuse("no user " + name);
  size_t n = kick_everywhere(name, Result::kicked);
  return answer([&](Json& w) { put(w, "closed", n); });
}

}  // namespace up
