// uringproxy.json (docs/configuration.md) to Config.
#include <libpq-fe.h>

#include <cstring>
#include <set>

#include "config/acl_syntax.h"
#include "config/config_sections.h"
#include "config/host_port.h"
#include "config/json_reader.h"
#include "config/on_failure.h"
#include "uringproxy/config.h"

namespace up {

namespace {

using config::FileDiagnostics;
using config::ObjectReader;
using config::quote;

constexpr uint64_t kMaxMs = 24ull * 3600 * 1000;  // a day: anything longer is a typo
// Not 9100: node_exporter holds it on most hosts. Prometheus' default-port allocations wiki
// gives 9090-9094 to its own components and 9100-9999 to exporters (that range is full; new
// allocations go on past 10000), and asks software outside that list to stay off those ports.
// 9089 lies just below the list, outside the ephemeral range the proxy dials from.
constexpr const char* kDefaultMetricsListen = "127.0.0.1:9089";
constexpr const char* kDefaultControlSocket = "run/control.sock";

std::string acl_check(const std::string& s) { return config::check_acl_entry(s); }

std::string listen_example(const std::string& given) {
  return given.find(':') != given.rfind(':') || (!given.empty() && given[0] == '[')
             ? "(e.g. \"[::1]:1080\")"
             : "(e.g. \"127.0.0.1:1080\")";
}

bool same_address(const SocketAddress& a, const SocketAddress& b) {
  return a.len == b.len && std::memcmp(&a.addr, &b.addr, a.len) == 0;
}

void read_listeners(ObjectReader& root, const std::string& dir, Config& out) {
  const rapidjson::Value* arr = root.get_array("listeners", true);
  if (arr == nullptr) return;
  FileDiagnostics& fd = root.diag();
  if (arr->Empty()) {
    root.error("listeners",
               "is empty; add at least one listener, e.g. {\"name\": \"socks\", \"protocol\": "
               "\"socks5\", \"listen\": \"127.0.0.1:1080\"}");
    return;
  }
  std::set<std::string> names;
  std::vector<std::pair<SocketAddress, size_t>> seen;  // valid addresses and their index
  for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
    std::string path = config::index_path("listeners", i);
    const rapidjson::Value& v = (*arr)[i];
    if (!v.IsObject()) {
      fd.error(path, std::string("must be an object {\"name\", \"protocol\", \"listen\"}, not ") +
                         config::json_type_name(v));
      continue;
    }
    ObjectReader r(fd, v, path);
    ListenerConfig l;
    bool agent_listener = false;
    if (r.get_string("name", l.name, true) && !names.insert(l.name).second)
      r.error("name", quote(l.name) + " is already used by another listener; names must be unique");
    std::string proto;
    if (r.get_string("protocol", proto, true)) {
      if (proto == "socks5") {
        l.protocol = Protocol::socks5;
      } else if (proto == "http") {
        l.protocol = Protocol::http;
      } else if (proto == "vless") {
        l.protocol = Protocol::vless;
      } else if (proto == "agent") {
        l.protocol = Protocol::agent;
        agent_listener = true;
      } else {
        r.error("protocol", quote(proto) + " is not a protocol; use \"socks5\", \"http\", "
                                            "\"vless\" or \"agent\"");
      }
    }
    std::string listen;
    if (r.get_string("listen", listen, true)) {
      if (!parse_socket_address(listen, l.listen)) {
        r.error("listen", quote(listen) + " is not ip:port " + listen_example(listen));
      } else {
        for (const auto& [addr, j] : seen) {
          if (same_address(addr, l.listen)) {
            r.error("listen", quote(listen) + " is already used by listeners[" +
                                  std::to_string(j) + "]; give each listener its own address");
            break;
          }
        }
        seen.emplace_back(l.listen, i);
      }
    }
    if (const rapidjson::Value* tls = r.get_object("tls")) {
      ObjectReader t(fd, *tls, r.field("tls"));
      TlsServerFiles files;
      bool ok = t.get_path("cert", dir, files.cert, true);
      ok = t.get_path("key", dir, files.key, true) && ok;
      t.finish();
      if (ok) l.tls = files;
    } else if (l.protocol == Protocol::vless && r.has("protocol") && !r.has("tls")) {
      r.error("protocol", "\"vless\" needs TLS; add \"tls\": {\"cert\": ..., \"key\": ...}");
    } else if (agent_listener) {
      // Agents send their secret in the first frame: never in the clear.
      r.error("protocol", "\"agent\" needs TLS (agents send their secret on connect); add "
                          "\"tls\": {\"cert\": ..., \"key\": ...}");
      agent_listener = false;  // one message is enough
    }
    r.finish();
    if (!l.listen.text.empty()) out.listeners.push_back(std::move(l));
  }
}

void read_routing(ObjectReader& root, Config& out) {
  const rapidjson::Value* v = root.get_object("routing");
  if (v == nullptr) return;
  ObjectReader r(root.diag(), *v, "routing");
  config::read_on_failure(r, "on_failure", out.routing.on_failure);
  std::string fb;
  if (r.get_string("group_fallback", fb)) {
    if (fb == "default") {
      out.routing.group_fallback_default = true;
    } else if (fb == "reject") {
      out.routing.group_fallback_default = false;
    } else {
      r.error("group_fallback", quote(fb) + " is not \"default\" or \"reject\"");
    }
  }
  r.finish();
}

void read_upstream(ObjectReader& root, Config& out) {
  const rapidjson::Value* v = root.get_object("upstream");
  if (v == nullptr) return;
  ObjectReader r(root.diag(), *v, "upstream");
  r.get_uint_as("connect_timeout_ms", out.upstream.connect_timeout_ms, 1, kMaxMs);
  r.get_uint_as("attempts", out.upstream.attempts, 1, 100);
  r.get_uint_as("backoff_ms", out.upstream.backoff_ms, 0, kMaxMs);
  r.finish();
}

void read_groups(ObjectReader& root, Config& out) {
  const rapidjson::Value* v = root.get_object("groups");
  if (v == nullptr) return;
  FileDiagnostics& fd = root.diag();
  for (auto it = v->MemberBegin(); it != v->MemberEnd(); ++it) {
    std::string name(it->name.GetString(), it->name.GetStringLength());
    std::string path = "groups." + (name.empty() ? std::string("\"\"") : name);
    if (name.empty() || name.find_first_of(std::string(" \t\r\n:.\0", 7)) != std::string::npos) {
      fd.error("groups", quote(name) +
                             " is not a group name (no '.', ':' or whitespace: it follows the '.' "
                             "in \"user.group\")");
      continue;
    }
    if (out.groups.count(name)) {
      fd.error(path, "appears more than once in groups; keep one");
      continue;
    }
    if (!it->value.IsObject()) {
      fd.error(path, std::string("must be an object {\"policy\", \"on_failure\"}, not ") +
                         config::json_type_name(it->value));
      continue;
    }
    ObjectReader r(fd, it->value, path);
    GroupConfig g;
    std::string policy;
    if (r.get_string("policy", policy)) {
      if (policy == "round_robin") {
        g.policy = GroupPolicy::round_robin;
      } else if (policy == "least_conn") {
        g.policy = GroupPolicy::least_conn;
      } else if (policy == "hash_user") {
        g.policy = GroupPolicy::hash_user;
      } else {
        r.error("policy", quote(policy) +
                              " is not a policy; use \"round_robin\", \"least_conn\" or \"hash_user\"");
      }
    }
    config::read_on_failure(r, "on_failure", g.on_failure);
    r.finish();
    out.groups.emplace(name, g);
  }
}

void read_health_check(ObjectReader& root, Config& out) {
  const rapidjson::Value* v = root.get_object("health_check");
  if (v == nullptr) return;
  ObjectReader r(root.diag(), *v, "health_check");
  r.get_uint_as("interval_ms", out.health_check.interval_ms, 100, kMaxMs);
  r.get_uint_as("timeout_ms", out.health_check.timeout_ms, 1, kMaxMs);
  std::string target;
  if (r.get_string("target", target, false, true)) {
    if (!target.empty() && !config::is_host_port(target)) {
      r.error("target", quote(target) + " is not host:port (e.g. \"example.com:443\"); use \"\" "
                                         "for a TCP/TLS-only probe");
    } else {
      out.health_check.target = target;
    }
  }
  r.finish();
}

void read_dns(ObjectReader& root, Config& out) {
  const rapidjson::Value* v = root.get_object("dns");
  if (v == nullptr) return;
  ObjectReader r(root.diag(), *v, "dns");
  if (const rapidjson::Value* servers = r.get_array("servers")) {
    for (rapidjson::SizeType i = 0; i < servers->Size(); ++i) {
      const rapidjson::Value& s = (*servers)[i];
      std::string where = config::index_path(r.field("servers"), i);
      SocketAddress sa;
      if (!s.IsString()) {
        root.diag().error(where, std::string("must be a string \"ip:port\", not ") +
                                     config::json_type_name(s));
      } else if (!config::parse_dns_server(std::string(s.GetString(), s.GetStringLength()), sa)) {
        root.diag().error(where, quote(std::string(s.GetString(), s.GetStringLength())) +
                                     " is not an IP address with an optional port (e.g. "
                                     "\"127.0.0.1:53\" or \"[::1]:53\")");
      } else {
        out.dns.servers.push_back(std::move(sa));
      }
    }
  }
  r.get_uint_as("cache_max_ttl_s", out.dns.cache_max_ttl_s, 0, 7 * 24 * 3600);
  r.finish();
}

void read_acl(ObjectReader& root, Config& out) {
  const rapidjson::Value* v = root.get_object("acl");
  if (v == nullptr) return;
  FileDiagnostics& fd = root.diag();
  ObjectReader r(fd, *v, "acl");
  r.get_bool("deny_private", out.acl.deny_private);
  r.get_string_array("allow", out.acl.allow, acl_check);
  r.get_string_array("deny", out.acl.deny, acl_check);
  if (const rapidjson::Value* ports = r.get_array("deny_ports")) {
    for (rapidjson::SizeType i = 0; i < ports->Size(); ++i) {
      const rapidjson::Value& p = (*ports)[i];
      std::string where = config::index_path("acl.deny_ports", i);
      if (!p.IsUint64() || p.GetUint64() < 1 || p.GetUint64() > 65535) {
        fd.error(where, "must be a port number 1..65535");
        continue;
      }
      out.acl.deny_ports.push_back(static_cast<uint16_t>(p.GetUint64()));
    }
  }
  r.finish();
}

void read_limits(ObjectReader& root, Config& out) {
  const rapidjson::Value* v = root.get_object("limits");
  if (v == nullptr) return;
  ObjectReader r(root.diag(), *v, "limits");
  LimitsConfig& l = out.limits;
  r.get_uint_as("handshake_timeout_ms", l.handshake_timeout_ms, 1, kMaxMs);
  r.get_uint_as("idle_timeout_ms", l.idle_timeout_ms, 1, UINT32_MAX);
  r.get_uint_as("max_connections_per_user", l.max_connections_per_user, 0, UINT32_MAX);
  r.get_uint_as("bandwidth_bps_per_user", l.bandwidth_bps_per_user, 0, UINT64_MAX);
  r.get_uint_as("max_connections", l.max_connections, 0, UINT32_MAX);
  r.get_uint_as("auth_fail_block_after", l.auth_fail_block_after, 0, UINT32_MAX);
  r.get_uint_as("auth_fail_window_s", l.auth_fail_window_s, 1, 86400);
  r.get_uint_as("auth_block_s", l.auth_block_s, 1, 86400 * 7);
  r.get_uint_as("auth_fail_delay_ms", l.auth_fail_delay_ms, 0, 10000);
  // Below 1 KiB is a typo (a unit in MiB), not a cap.
  r.get_uint("max_config_file_bytes", l.max_config_file_bytes, 1024, UINT64_MAX);
  r.finish();
}

void read_control(ObjectReader& root, const std::string& dir, Config& out) {
  out.control_socket = config::resolve_path(dir, kDefaultControlSocket);
  const rapidjson::Value* v = root.get_object("control");
  if (v == nullptr) return;
  ObjectReader r(root.diag(), *v, "control");
  r.get_path("socket", dir, out.control_socket);
  r.finish();
}

void read_metrics(ObjectReader& root, Config& out) {
  std::string listen = kDefaultMetricsListen;
  if (const rapidjson::Value* v = root.get_object("metrics")) {
    ObjectReader r(root.diag(), *v, "metrics");
    out.metrics_listen_written = r.get_string("listen", listen, false, true);
    r.get_uint_as("max_user_series", out.metrics_max_user_series, 0, 1000000);
    r.finish();
  }
  out.metrics_listen.reset();
  if (listen.empty()) return;
  SocketAddress sa;
  if (!parse_socket_address(listen, sa)) {
    root.diag().error("metrics.listen", quote(listen) + " is not ip:port (e.g. \"" +
                                            kDefaultMetricsListen + "\"); use \"\" to disable");
    return;
  }
  out.metrics_listen = std::move(sa);
}

void read_access_log(ObjectReader& root, const std::string& dir, Config& out) {
  std::string v;
  if (!root.get_string("access_log", v, false, true)) return;
  if (v == "stderr" || v == "off") {
    out.access_log = v;
  } else if (v.empty() || v.find('\0') != std::string::npos) {
    root.error("access_log", "must be \"stderr\", \"off\" or a file path");
  } else {
    out.access_log = config::resolve_path(dir, v);
  }
}

void read_run_as(ObjectReader& root, Config& out) {
  for (auto [key, field] : {std::pair{"user", &out.run_as_user}, {"group", &out.run_as_group}}) {
    std::string v;
    if (!root.get_string(key, v)) continue;
    if (v.find_first_of(std::string(" \t\r\n:\0", 6)) != std::string::npos) {
      root.error(key, quote(v) + " is not a " + key + " name");
      continue;
    }
    *field = v;
  }
}

// The DSN is checked by libpq itself, so what passes here is what libpq will connect with. Its
// text is never put in a message, not even libpq's own (which quotes the offending part): it
// may hold a password.
void check_dsn(ObjectReader& r, StoreConfig& s) {
  if (s.dsn.find('\0') != std::string::npos) {
    r.error("dsn", "contains a NUL byte; write a libpq connection string");
    return;
  }
  char* why = nullptr;
  PQconninfoOption* opts = PQconninfoParse(s.dsn.c_str(), &why);
  if (why) PQfreemem(why);
  if (!opts) {
    r.error("dsn", "does not parse as a libpq connection string (key=value pairs such as "
                   "\"host=db.internal dbname=uringproxy user=uringproxy\", a value with spaces "
                   "in single quotes, or a postgresql:// URI); it is not shown because it may "
                   "hold a password");
    return;
  }
  bool has_password = false;
  for (const PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val || !*o->val) continue;
    if (std::strcmp(o->keyword, "password") == 0) has_password = true;
    if (std::strcmp(o->keyword, "host") == 0 ||
        (std::strcmp(o->keyword, "hostaddr") == 0 && s.dsn_host.empty()))
      s.dsn_host = o->val;
  }
  PQconninfoFree(opts);
  if (has_password && !s.password_file.empty())
    r.error("password_file", "is given and the dsn has a password too; keep one of them (a "
                             "password_file keeps the password out of this file)");
}

void read_store(ObjectReader& root, const std::string& dir, Config& out) {
  const rapidjson::Value* v = root.get_object("store");
  if (v == nullptr) return;
  ObjectReader r(root.diag(), *v, "store");
  StoreConfig& s = out.store;
  std::string type;
  if (r.get_string("type", type)) {
    if (type == "json") {
      s.type = StoreConfig::Type::json;
    } else if (type == "postgres") {
      s.type = StoreConfig::Type::postgres;
    } else {
      r.error("type", quote(type) + " is not \"json\" or \"postgres\"");
    }
  }
  bool has_dsn = r.get_string("dsn", s.dsn);
  bool has_node = r.get_string("node", s.node);
  r.get_path("password_file", dir, s.password_file);
  r.get_uint_as("flush_interval_ms", s.flush_interval_ms, 100, 60000);
  if (s.type == StoreConfig::Type::json) {
    for (const char* k : {"dsn", "node", "password_file"})
      if (r.has(k))
        r.error(k, "is read only with \"type\": \"postgres\"; remove it, or set the type");
  } else {
    if (has_dsn)
      check_dsn(r, s);
    else if (!r.has("dsn"))
      r.error("dsn", "is required with \"type\": \"postgres\" (a libpq connection string, "
                     "e.g. \"host=db.internal dbname=uringproxy user=uringproxy\")");
    if (has_node && s.node.find_first_of(std::string(" \t\r\n\0", 5)) != std::string::npos)
      r.error("node", quote(s.node) + " contains whitespace; name the node without it");
    else if (!has_node && !r.has("node"))
      r.error("node", "is required with \"type\": \"postgres\": this node's name, unique in "
                      "the fleet (e.g. the host name)");
  }
  r.finish();
}

}  // namespace

bool parse_config(const std::string& text, const std::string& path, Config& out,
                  Diagnostics& diag) {
  FileDiagnostics fd(path, diag);
  size_t errors_before = diag.errors.size();
  out = Config{};
  out.path = config::absolute_path(path);
  out.dir = config::parent_dir(out.path);
  const std::string& dir = out.dir;

  rapidjson::Document doc;
  if (!config::parse_json(text, fd, doc)) return false;
  if (!doc.IsObject()) {
    fd.error("", std::string("the top level must be an object {...}, not ") +
                     config::json_type_name(doc) + " (see config/uringproxy.json for an example)");
    return false;
  }
  ObjectReader root(fd, doc, "");
  root.get_uint_as("workers", out.workers, 0, 1024);
  read_listeners(root, dir, out);

  std::string auth;
  if (root.get_string("auth", auth)) {
    if (auth == "required") {
      out.auth_required = true;
    } else if (auth == "none") {
      out.auth_required = false;
    } else {
      root.error("auth", quote(auth) + " is not \"required\" or \"none\"");
    }
  }
  bool has_users = root.get_path("users_file", dir, out.users_file);
  root.get_path("proxies_file", dir, out.proxies_file);
  root.get_path("agents_file", dir, out.agents_file);

  read_routing(root, out);
  read_upstream(root, out);
  read_groups(root, out);
  read_health_check(root, out);
  read_dns(root, out);
  read_acl(root, out);
  read_limits(root, out);
  read_control(root, dir, out);
  read_metrics(root, out);
  read_access_log(root, dir, out);
  root.get_uint_as("shutdown_grace_ms", out.shutdown_grace_ms, 0, kMaxMs);
  read_run_as(root, out);
  read_store(root, dir, out);
  // With the PostgreSQL store the users come from the database, not a file.
  if (!has_users && out.auth_required && !root.has("users_file") &&
      out.store.type != StoreConfig::Type::postgres)
    root.error("users_file", "is required when auth is \"required\" (e.g. \"users.json\")");
  root.finish();
  return diag.errors.size() == errors_before;
}

namespace config {
void read_dns_section(ObjectReader& root, Config& out) { read_dns(root, out); }
void read_acl_section(ObjectReader& root, Config& out) { read_acl(root, out); }
}  // namespace config

bool parse_groups(const std::string& text, const std::string& path,
                  std::map<std::string, GroupConfig>& out, Diagnostics& diag) {
  FileDiagnostics fd(path, diag);
  size_t errors_before = diag.errors.size();
  rapidjson::Document doc;
  if (!config::parse_json(text, fd, doc)) return false;
  if (!doc.IsObject()) {
    fd.error("", "groups must be an object {name: {...}}");
    return false;
  }
  ObjectReader root(fd, doc, "");
  Config c;
  read_groups(root, c);
  out = std::move(c.groups);
  return diag.errors.size() == errors_before;
}

}  // namespace up
