#pragma once
// The operator's files as typed values: uringproxy.json, users.json and external_proxy.json
// (docs/configuration.md). Loading validates everything and reports every problem with the
// file, the field and the fix; nothing here touches sockets or threads.
#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace up {

// A listen/connect address "ip:port" or "[v6]:port" resolved to a sockaddr (no DNS).
struct SocketAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // as written
};
bool parse_socket_address(const std::string& text, SocketAddress& out);

struct TlsServerFiles {
  std::string cert;  // absolute paths
  std::string key;
};

// agent: the gateway side of reverse agents (src/agent, docs/agent-protocol.md); TLS only.
enum class Protocol : uint8_t { socks5, http, vless, agent };

struct ListenerConfig {
  std::string name;
  Protocol protocol = Protocol::socks5;
  SocketAddress listen;
  std::optional<TlsServerFiles> tls;
};

// What to do when an upstream route fails: fail closed, leave directly, or use another upstream.
struct OnFailure {
  enum class Kind : uint8_t { unset, reject, direct, upstream };
  Kind kind = Kind::unset;
  std::string upstream_id;  // for Kind::upstream
};

enum class GroupPolicy : uint8_t { round_robin, least_conn, hash_user };

struct GroupConfig {
  GroupPolicy policy = GroupPolicy::round_robin;
  OnFailure on_failure;
};

struct AclConfig {
  bool deny_private = true;
  std::vector<std::string> allow;  // CIDR, exact host, or "*.suffix"; validated on load
  std::vector<std::string> deny;
  std::vector<uint16_t> deny_ports;
};

// Where users, upstreams and usage live (docs/configuration.md#store): the JSON files beside
// this config (the default), or a PostgreSQL database shared by a fleet of nodes.
struct StoreConfig {
  enum class Type : uint8_t { json, postgres };
  Type type = Type::json;
  std::string dsn;            // libpq connection string (postgres); may hold a password
  std::string node;           // this node's name in the fleet (postgres)
  std::string password_file;  // absolute; empty = the DSN's password or PGPASSFILE
  std::string dsn_host;       // the DSN's host, for messages that must not show the password
  uint32_t flush_interval_ms = 1000;  // how often per-user byte counts are added to usage
};

inline constexpr uint64_t kDefaultMaxConfigFileBytes = 64ull << 20;  // 64 MiB: ~200,000 users

struct LimitsConfig {
  uint32_t handshake_timeout_ms = 10000;
  uint32_t idle_timeout_ms = 300000;
  uint32_t max_connections_per_user = 0;  // 0 = unlimited
  uint64_t bandwidth_bps_per_user = 0;    // bits per second, 0 = unlimited
  uint32_t max_connections = 0;           // global cap across workers, 0 = derived from fd limit
  // Brute force: this many failed logins from one client address within the window block
  // that address for auth_block_s (0 = never block, never slow down). Past half of them, each
  // failure is answered auth_fail_delay_ms later than the one before (at most 2 s later).
  uint32_t auth_fail_block_after = 100;
  uint32_t auth_fail_window_s = 60;
  uint32_t auth_block_s = 300;
  uint32_t auth_fail_delay_ms = 100;
  // The largest users_file / proxies_file read at start-up, reload or an edit: checked with
  // fstat before a byte is read, so a runaway file cannot balloon memory. The main config itself
  // is capped at the default (it is read before this field is known).
  uint64_t max_config_file_bytes = kDefaultMaxConfigFileBytes;
};

struct Config {
  std::string path;  // absolute path of the main config
  std::string dir;   // its directory; relative paths in it are resolved against this
  unsigned workers = 0;  // 0 = all online CPUs
  std::vector<ListenerConfig> listeners;
  bool auth_required = true;
  std::string users_file;    // absolute; empty when auth is none and no file given
  std::string proxies_file;  // absolute; may be empty (no upstreams)
  std::string agents_file;   // absolute; empty = no reverse agents (docs/agent-protocol.md)
  struct {
    OnFailure on_failure{OnFailure::Kind::reject, {}};
    bool group_fallback_default = true;  // "default" (true) or "reject" (false)
  } routing;
  struct {
    uint32_t connect_timeout_ms = 5000;
    uint32_t attempts = 3;
    uint32_t backoff_ms = 1000;
  } upstream;
  std::map<std::string, GroupConfig> groups;
  struct {
    uint32_t interval_ms = 10000;
    uint32_t timeout_ms = 3000;
    std::string target;  // "host:port" for http/https CONNECT probes; empty = TCP/TLS only
  } health_check;
  struct {
    std::vector<SocketAddress> servers;  // empty = /etc/resolv.conf
    uint32_t cache_max_ttl_s = 300;
  } dns;
  AclConfig acl;
  // Where direct connections to targets leave from (port 0). Only the agent mode sets it
  // (agent.json "source_address", src/agent/agent_config.h); uringproxy.json has no such field.
  std::optional<SocketAddress> source_address;
  LimitsConfig limits;
  std::string control_socket;  // absolute; default <dir>/run/control.sock
  std::optional<SocketAddress> metrics_listen;  // "metrics": {"listen": ""} disables
  bool metrics_listen_written = false;  // false: the default, which only warns when taken
  uint32_t metrics_max_user_series = 1000;
  std::string access_log = "stderr";  // "stderr", "off", or an absolute file path
  uint32_t shutdown_grace_ms = 10000;
  std::string run_as_user;   // "user": drop root after binding (optional)
  std::string run_as_group;  // "group"
  StoreConfig store;
};

// The window a byte quota counts over; each starts at a UTC boundary (route/quota.h).
enum class QuotaPeriod : uint8_t { none, day, week, month };

struct User {
  std::string username;
  std::string password_hash;  // crypt(3) string
  std::string uuid;           // VLESS id, canonical lower-case 8-4-4-4-12; may be empty
  std::string email;
  std::optional<std::string> external_proxy_id;
  std::optional<std::vector<std::string>> groups;  // absent = any group
  bool enabled = true;
  // Absent = the default in limits; present overrides it, and an explicit 0 means unlimited.
  std::optional<uint32_t> max_connections;
  std::optional<uint64_t> bandwidth_bps;  // bits per second, each direction
  std::vector<std::string> allow;
  std::vector<std::string> deny;
  // Bytes both ways per quota_period; 0 = no quota (there is no fleet-wide default).
  uint64_t quota_bytes = 0;
  QuotaPeriod quota_period = QuotaPeriod::none;
};

// The limits that apply to one user (0 = unlimited): the user's own field where they wrote
// one, else the default in limits. The one place this rule lives; a per-user field added later
// (quota_bytes) follows it through own_or_default.
struct UserLimits {
  uint32_t max_connections = 0;
  uint64_t bandwidth_bps = 0;
};
template <typename T>
T own_or_default(const std::optional<T>& own, T fallback) {
  return own ? *own : fallback;
}
inline UserLimits effective_limits(const User& u, const LimitsConfig& defaults) {
  return {own_or_default(u.max_connections, defaults.max_connections_per_user),
          own_or_default(u.bandwidth_bps, defaults.bandwidth_bps_per_user)};
}

// agent: a connected reverse agent as a group member (never in proxies_file; src/agent).
enum class UpstreamType : uint8_t { socks5, socks5s, http, https, agent };

struct UpstreamTls {
  std::string server_name;  // default: address
  bool verify = true;
  std::string ca_file;      // absolute; empty = system store
};

struct UpstreamProxy {
  std::string id;
  std::string name;
  UpstreamType type = UpstreamType::socks5;
  std::string address;  // host name or literal
  uint16_t port = 0;
  std::string username;
  std::string password;
  bool enabled = true;
  std::string group;  // empty = no group
  UpstreamTls tls;
  OnFailure on_failure;
};

// A reverse agent the gateway accepts (agents_file, docs/agent-protocol.md).
struct Agent {
  std::string id;           // letters, digits, '-', '_', '.'
  std::string secret_hash;  // crypt(3) hash of the agent's secret
  std::string group;        // the group the agent serves
  bool enabled = true;
};

// Everything the operator wrote, loaded together so cross-references can be checked.
struct ConfigSet {
  Config config;
  std::vector<User> users;
  std::vector<UpstreamProxy> proxies;
  std::vector<Agent> agents;
};

// A user's external_proxy_id names an upstream by its id, or an agent (agents_file or the
// store) as "agent:ID" (its name in the access log): a VLESS user, who cannot pick a group with
// the user.group form, reaches an agent this way.
inline constexpr std::string_view agent_route_prefix = "agent:";
inline bool names_agent(const std::vector<Agent>& agents, std::string_view id) {
  if (!id.starts_with(agent_route_prefix)) return false;
  id.remove_prefix(agent_route_prefix.size());
  for (const Agent& a : agents)
    if (a.id == id) return true;
  return false;
}
inline bool names_route(const std::vector<UpstreamProxy>& proxies,
                        const std::vector<Agent>& agents, std::string_view id) {
  for (const UpstreamProxy& p : proxies)
    if (p.id == id) return true;
  return names_agent(agents, id);
}

// names_route for many ids at once (every user of a file or table): the proxies' ids hashed
// once. Holds views into `proxies` and a reference to `agents`: use it while both are alive.
class RouteIds {
 public:
  RouteIds(const std::vector<UpstreamProxy>& proxies, const std::vector<Agent>& agents)
      : agents_(agents) {
    for (const UpstreamProxy& p : proxies) proxies_.insert(p.id);
  }
  bool proxy(std::string_view id) const { return proxies_.count(id) != 0; }
  bool contains(std::string_view id) const { return proxy(id) || names_agent(agents_, id); }

 private:
  std::unordered_set<std::string_view> proxies_;
  const std::vector<Agent>& agents_;
};

// Every problem found, each a full sentence naming file, record, field and fix, e.g.
// "users.json: user \"dave\" (users[3]).password: not a crypt(3) hash (use openssl passwd -6
// or uringproxyctl user add)". Warnings are for accepted fields whose feature has not landed.
struct Diagnostics {
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
  bool ok() const { return errors.empty(); }
};

// Reads one operator file into `text`, refusing before reading one larger than max_bytes (or
// one that grows past it while read); `error` then says why, naming the size and the cap.
bool read_config_file(const std::string& path, uint64_t max_bytes, std::string& text,
                      std::string& error);

// Parse from text (for tests and fuzzing); `path` is used for messages and relative paths.
bool parse_config(const std::string& text, const std::string& path, Config& out,
                  Diagnostics& diag);
// With `skipped`, an entry that does not load is left out and its errors go there instead of
// diag (the PostgreSQL store skips such a row and reports it); errors about the document as a
// whole (and the proxies' on_failure loops) stay in diag.
bool parse_users(const std::string& text, const std::string& path, std::vector<User>& out,
                 Diagnostics& diag, std::vector<std::string>* skipped = nullptr);
bool parse_proxies(const std::string& text, const std::string& path,
                   std::vector<UpstreamProxy>& out, Diagnostics& diag,
                   std::vector<std::string>* skipped = nullptr);
bool parse_agents(const std::string& text, const std::string& path, std::vector<Agent>& out,
                  Diagnostics& diag, std::vector<std::string>* skipped = nullptr);

// `{"groups": {...}}` as the main config writes them (the PostgreSQL store's groups table).
bool parse_groups(const std::string& text, const std::string& path,
                  std::map<std::string, GroupConfig>& out, Diagnostics& diag);

// Reads the main config, then its users and proxies files (not with the PostgreSQL store:
// then apply_store_records fills them in); checks cross-references
// (external_proxy_id and on_failure ids exist, unique usernames/ids/uuids, group names) and the
// proxies file's mode (refused when group or others can read it).
bool load_config_set(const std::string& config_path, ConfigSet& out, Diagnostics& diag);

// The PostgreSQL store's records, as documents in the files' shapes ({"users": [...]},
// {"proxies": [...]}, {"groups": {...}}): parsed by the same loaders and cross-checked as
// load_config_set does. The store's groups are added to the main config's (the store's wins
// on a name in both). A row that does not load (and a user naming an upstream that is not
// there) is skipped with a warning naming its key: one bad row must not stop a node or freeze
// the fleet's edits. False (with errors naming the store's table) only when the records as a
// whole do not load (a document that does not parse, an on_failure loop, the groups).
bool apply_store_records(const std::string& users_doc, const std::string& proxies_doc,
                         const std::string& groups_doc, ConfigSet& out, Diagnostics& diag);

// The store's agents ({"agents": [...]}, the agents_file's shape) into out.agents, by the
// agents_file's loader; call it before apply_store_records, whose group check counts them. A
// row that does not load is skipped with a warning naming its id (the other agents serve);
// false only when the document as a whole does not parse.
bool apply_store_agents(const std::string& agents_doc, ConfigSet& out, Diagnostics& diag);

// Serialisers for live edits (issue 4): the same shapes the parsers accept.
std::string users_to_json(const std::vector<User>& users);
// The same file from records cached one per user, so a live edit of one user among 100,000
// serialises only that user: users_json_from_records(records of `users`, out) leaves in `out`
// exactly users_to_json(users), reusing out's buffer.
std::string user_json_record(const User& u);
void users_json_from_records(const std::vector<std::string>& records, std::string& out);
std::string proxies_to_json(const std::vector<UpstreamProxy>& proxies);
std::string agents_to_json(const std::vector<Agent>& agents);

// How messages name one record: by the operator's name for it, then its place in the file, so
// "users.json: user \"dave\" (users[3]).password: ..." can be found among 5,000 users.
std::string user_where(const std::string& username, size_t index);
std::string upstream_where(const std::string& id, size_t index);

const char* to_string(Protocol p);
const char* to_string(UpstreamType t);
const char* to_string(QuotaPeriod p);  // "day", "week", "month"; "" for none
bool parse_quota_period(const std::string& text, QuotaPeriod& out);

}  // namespace up
