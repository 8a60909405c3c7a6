// Control requests (docs/control-protocol.md): one JSON object in, one out.
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "config/config_equal.h"
#include "config/user_fields.h"
#include "control/atomic_file.h"
#include "control/control_answer.h"
#include "control/control_request.h"
#include "control/management.h"
#include "control/store_edit.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/worker.h"
#include "route/snapshot_store.h"
#include "upstream/tls_layer.h"
#include "upstream/upstream_probe.h"

namespace up {

using namespace control_answer;

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

void Management::handle(const std::string& line, const Reply& done) {
  std::string error;
  std::optional<ControlRequest> req = parse_control_request(line, error);
  if (!req) return done(refuse(error));
  const std::string& cmd = req->cmd;
  const Args& d = req->args;
  // Commands that need the workers or a probe answer later; `d` is gone by then, so they take
  // what they need from it first.
  if (cmd == "status") return cmd_status(done);
  if (cmd == "reload") return cmd_reload(done);
  if (cmd == "stats") return cmd_stats(done);
  if (cmd == "user.list") return done(cmd_user_list());
  if (cmd == "user.add" || cmd == "user.del" || cmd == "user.passwd" || cmd == "user.enable" ||
      cmd == "user.disable")
    return cmd_user_edit(cmd, d, done);
  if (cmd == "set-proxy") return cmd_set_proxy(d, done);
  if (cmd == "show-proxy") return done(cmd_show_proxy(d));
  if (cmd == "list-proxy-assignments") return done(cmd_list_assignments());
  if (cmd == "proxy.list") return done(cmd_proxy_list());
  if (cmd == "proxy.add" || cmd == "proxy.del" || cmd == "proxy.enable" || cmd == "proxy.disable")
    return cmd_proxy_edit(cmd, d, done);
  if (cmd == "proxy.test") return cmd_proxy_test(d, done);
  if (cmd == "connections") return cmd_connections(d, done);
  if (cmd == "kick") return cmd_kick(d, done);
  if (cmd == "agents") return done(cmd_agents());
  if (cmd == "agent.add" || cmd == "agent.del" || cmd == "agent.enable" ||
      cmd == "agent.disable" || cmd == "agent.kick")
    return cmd_agent(cmd, d, done);
  if (cmd == "usage") return done(cmd_usage(d));
  if (cmd == "quota.set") return cmd_quota_set(d, done);
  if (cmd == "quota.reset") return cmd_quota_reset(d, done);
  done(refuse("unknown command \"" + cmd + "\" (see docs/control-protocol.md)"));
}

void Management::cmd_status(const Reply& done) {
  ask_workers<uint64_t>([](Worker& w) { return w.stats().connections_active; },
                        [this, done](std::vector<uint64_t> per_worker) {
                          uint64_t active = 0;
                          for (uint64_t n : per_worker) active += n;
                          done(answer([&](Json& w) {
                            put(w, "version", std::string(URINGPROXY_VERSION));
                            put(w, "uptime_s", (monotonic_ms() - started_ms_) / 1000);
                            put(w, "workers", rt_.workers.size());
                            put(w, "generation", generation_);
                            put(w, "connections_active", active);
                            w.Key("ktls");  // the kernel has the TLS ULP (tls/ktls_probe.h)
                            w.Bool(rt_.ktls);
                            put(w, "store", std::string(current_.config.store.type ==
                                                                StoreConfig::Type::json
                                                            ? "json"
                                                            : "postgres"));
                            if (store_) {
                              w.Key("store_up");
                              w.Bool(store_->up());
                              put(w, "node", current_.config.store.node);
                            }
                          }));
                        });
}

void Management::cmd_reload(const Reply& done) {
  std::vector<std::string> errors;
  if (!reload(errors, [done](uint64_t generation, size_t) {
        done(answer([&](Json& w) { put(w, "generation", generation); }));
      }))
    done(refuse("reload refused; the running configuration is unchanged", errors));
}

void Management::cmd_stats(const Reply& done) {
  collect_stats([done](WorkerStats s) {
    done(answer([&](Json& w) {
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
    }));
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

namespace {

std::vector<User>::iterator find_user(std::vector<User>& users, const std::string& name) {
  return std::find_if(users.begin(), users.end(),
                      [&](const User& u) { return u.username == name; });
}

bool has_proxy(const std::vector<UpstreamProxy>& proxies, const std::string& id) {
  return std::any_of(proxies.begin(), proxies.end(),
                     [&](const UpstreamProxy& p) { return p.id == id; });
}

bool ends_tunnels(const std::optional<User>& before, const std::optional<User>& after) {
  return before && (!after || (before->enabled && !after->enabled) ||
                    after->password_hash != before->password_hash);
}

}  // namespace

std::string Management::edit_user(const std::string& name, const UserEdit& edit,
                                  Committed then, Reply refused) {
  if (store_) return edit_user_in_store(name, edit, std::move(then), std::move(refused));
  if (!stamps_.unchanged()) return edit_user_from_files(name, edit, std::move(then));
  const std::string& path = current_.config.users_file;
  if (path.empty()) return refuse("no users_file is configured");
  std::vector<User>& users = current_.users;
  auto it = find_user(users, name);
  std::optional<User> before;
  if (it != users.end()) before = *it;
  std::optional<User> after = before;
  if (std::string why = edit(after); !why.empty()) return refuse(why);
  // The other users were checked when they were read and have not changed since: check this
  // one the way the loader would, and what it refers to.
  if (after) {
    std::vector<User> check;
    Diagnostics cd;
    if (!parse_users(users_to_json({*after}), path, check, cd) || !cd.ok())
      return refuse("the edit would make users.json invalid", cd.errors);
    if (after->external_proxy_id &&
        !names_route(current_.proxies, current_.agents, *after->external_proxy_id))
      return refuse("the edit names an unknown upstream",
                    {"user " + name + ": no upstream has id " + *after->external_proxy_id});
    if (!after->uuid.empty() && (!before || before->uuid != after->uuid))
      for (const User& other : users)
        if (other.uuid == after->uuid && other.username != name)
          return refuse("uuid " + after->uuid + " is already " + other.username + "'s");
  }
  auto snap = snapshot_with_user(*snapshots_.current(), generation_ + 1, name,
                                 after ? &*after : nullptr, *rt_.users);
  // The file is rewritten whole, from one cached record per user: only this one is serialised.
  cache_user_records(users.size());  // what the idle loop has not cached yet
  // Applied in place (copying 100,000 users would cost more than the rest of the edit) and
  // undone if the file cannot be written.
  size_t index = static_cast<size_t>(it - users.begin());
  auto at = [&](size_t i) { return static_cast<std::ptrdiff_t>(i); };
  std::string before_record = before ? user_records_[index] : std::string();
  if (before && after) {
    *it = *after;
    user_records_[index] = user_json_record(*after);
  } else if (after) {
    users.push_back(*after);
    user_records_.push_back(user_json_record(*after));
  } else if (before) {
    users.erase(it);
    user_records_.erase(user_records_.begin() + at(index));
  }
  users_json_from_records(user_records_, users_text_);
  std::string err;
  if (!write_file_atomic(path, users_text_, 0600, err)) {
    if (before && after) {
      users[index] = *before;
      user_records_[index] = before_record;
    } else if (after) {
      users.pop_back();
      user_records_.pop_back();
    } else if (before) {
      users.insert(users.begin() + at(index), *before);
      user_records_.insert(user_records_.begin() + at(index), before_record);
    }
    return refuse(err);
  }
  stamps_.users = FileStamp::of(path);
  Changes ch;
  if (ends_tunnels(before, after)) ch.kick.push_back(name);
  ch.only_user = name;
  publish(std::move(snap), std::move(ch), std::move(then));
  return "";
}

// The files changed since they were read (or the daemon cannot tell): start from them, so a
// hand edit is kept, and check everything as a reload would.
std::string Management::edit_user_from_files(const std::string& name, const UserEdit& edit,
                                             Committed then) {
  ConfigStamps stamps = ConfigStamps::take(config_path_);
  ConfigSet next;
  Diagnostics d;
  if (!load_config_set(config_path_, next, d) || !d.ok())
    return refuse("the files on disk do not load; fix them (uringproxy --check) first", d.errors);
  if (next.config.users_file.empty()) return refuse("no users_file is configured");
  auto it = find_user(next.users, name);
  std::optional<User> before;
  if (it != next.users.end()) before = *it;
  std::optional<User> after = before;
  if (std::string why = edit(after); !why.empty()) return refuse(why);
  if (before && after)
    *it = *after;
  else if (after)
    next.users.push_back(*after);
  else if (before)
    next.users.erase(it);
  std::string text = users_to_json(next.users);
  // What we write must load: parse it back, and check its references, before writing.
  std::vector<User> check;
  Diagnostics cd;
  if (!parse_users(text, next.config.users_file, check, cd) || !cd.ok())
    return refuse("the edit would make users.json invalid", cd.errors);
  std::vector<std::string> errors;
  RouteIds routes(next.proxies, next.agents);
  for (const User& u : next.users)
    if (u.external_proxy_id && !routes.contains(*u.external_proxy_id))
      errors.push_back("user " + u.username + ": no upstream has id " + *u.external_proxy_id);
  if (!errors.empty()) return refuse("the edit names an unknown upstream", errors);
  auto snap = prepare(next, errors);
  if (!snap) return refuse("the edit does not load", errors);
  std::string err;
  if (!write_file_atomic(next.config.users_file, text, 0600, err)) return refuse(err);
  stamps_ = stamps.describes(next) ? std::move(stamps) : ConfigStamps{};
  stamps_.users = FileStamp::of(next.config.users_file);
  // commit() closes the tunnels of users deleted, disabled or given a new password.
  commit(std::move(snap), std::move(next), std::move(then));
  return "";
}

// A postgres node: the edit is one statement (the row and its NOTIFY commit together); once
// committed it is applied here as a file edit would be, and the other nodes read it on NOTIFY.
std::string Management::edit_user_in_store(const std::string& name, const UserEdit& edit,
                                           Committed then, Reply refused) {
  if (!store_->up()) return refuse(store_->execute("", {}, nullptr));
  auto it = find_user(current_.users, name);
  std::optional<User> before;
  if (it != current_.users.end()) before = *it;
  std::optional<User> after = before;
  if (std::string why = edit(after); !why.empty()) return refuse(why);
  if (after) {
    std::vector<User> check;
    Diagnostics cd;
    if (!parse_users(users_to_json({*after}), "store (table users)", check, cd) || !cd.ok())
      return refuse("the edit would not load", cd.errors);
    if (after->external_proxy_id &&
        !names_route(current_.proxies, current_.agents, *after->external_proxy_id))
      return refuse("the edit names an unknown upstream",
                    {"user " + name + ": no upstream has id " + *after->external_proxy_id});
    if (!after->uuid.empty() && (!before || before->uuid != after->uuid))
      for (const User& other : current_.users)
        if (other.uuid == after->uuid && other.username != name)
          return refuse("uuid " + after->uuid + " is already " + other.username + "'s");
  }
  std::string payload = current_.config.store.node + " user " + name;
  std::string sql;
  std::vector<std::string> params{name};
  // As with usage.json: a new user, a deleted one or another quota period counts from zero
  // (the usage table's rows are by period start, which two kinds of period can share).
  bool fresh_usage = !before || !after || before->quota_period != after->quota_period;
  const char* usage_cte = fresh_usage ? ", u AS (DELETE FROM usage WHERE username = $1) " : " ";
  if (after) {
    sql = std::string("WITH w AS (INSERT INTO users (username, record) VALUES ($1, $2::jsonb) "
                      "ON CONFLICT (username) DO UPDATE SET record = excluded.record, "
                      "updated_at = now())") +
          usage_cte + "SELECT pg_notify('uringproxy_changes', $3)";
    params.push_back(user_json_record(*after));
  } else {
    sql = std::string("WITH w AS (DELETE FROM users WHERE username = $1)") + usage_cte +
          "SELECT pg_notify('uringproxy_changes', $2)";
  }
  params.push_back(payload);
  std::string e = store_->execute(
      std::move(sql), std::move(params),
      [this, name, after, then, refused, fresh_usage](std::string err) {
        if (!err.empty()) {
          if (refused) refused(refuse("the store did not take the edit: " + err));
          return;
        }
        if (fresh_usage) {
          fleet_.reset(name);
          usage_.reset(name);
        }
        apply_user(name, after, then);
      });
  return e.empty() ? "" : refuse(e);
}

void Management::apply_user(const std::string& name, const std::optional<User>& after,
                            Committed then) {
  std::vector<User>& users = current_.users;
  auto at = find_user(users, name);
  std::optional<User> was;
  if (at != users.end()) was = *at;
  auto snap = snapshot_with_user(*snapshots_.current(), generation_ + 1, name,
                                 after ? &*after : nullptr, *rt_.users);
  if (was && after) *at = *after;
  else if (after) users.push_back(*after);
  else if (was) users.erase(at);
  Changes ch;
  if (ends_tunnels(was, after)) ch.kick.push_back(name);
  ch.only_user = name;
  publish(std::move(snap), std::move(ch), std::move(then));
}

void Management::cmd_user_edit(const std::string& cmd, const Args& a, const Reply& done) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return done(refuse(cmd + " needs \"username\""));
  // What user.add takes besides the password, read now: `a` is gone once the hash is made.
  std::optional<std::string> proxy;
  if (has_str(a, "proxy")) proxy = str_arg(a, "proxy");
  std::optional<std::vector<std::string>> groups;
  if (auto g = a.FindMember("groups"); g != a.MemberEnd() && g->value.IsArray()) {
    std::vector<std::string> list;
    for (const auto& v : g->value.GetArray())
      if (v.IsString()) list.push_back(v.GetString());
    if (!list.empty()) groups = std::move(list);
  }
  // The VLESS id of a new user: the one given, else a fresh random (version 4) one.
  std::string uuid;
  if (cmd == "user.add") {
    std::string given = str_arg(a, "uuid");
    if (given.empty()) given = random_uuid();
    if (!config::normalise_uuid(given, uuid))
      return done(refuse("uuid: \"" + given + "\" is not a UUID (8-4-4-4-12 hex digits)"));
  }
  auto apply = [this, cmd, name, proxy, groups, uuid, done](const std::string& hash) {
    std::string r = edit_user(
        name,
        [&](std::optional<User>& u) -> std::string {
          if (cmd == "user.add") {
            if (u) return "user " + name + " already exists";
            if (std::string bad = config::check_username(name); !bad.empty())
              return "username: " + bad;
            u.emplace();
            u->username = name;
            u->password_hash = hash;
            u->uuid = uuid;
            u->external_proxy_id = proxy;
            u->groups = groups;
            return "";
          }
          if (!u) return "no user " + name;
          if (cmd == "user.del") u.reset();
          if (cmd == "user.passwd") u->password_hash = hash;
          if (cmd == "user.enable") u->enabled = true;
          if (cmd == "user.disable") u->enabled = false;
          return "";
        },
        [cmd, name, uuid, done](uint64_t generation, size_t closed) {
          UP_INFO("%s %s: generation %llu", cmd.c_str(), name.c_str(),
                  static_cast<unsigned long long>(generation));
          done(answer([&](Json& w) {
            put(w, "generation", generation);
            if (cmd != "user.add" && cmd != "user.enable") put(w, "closed", closed);
            if (cmd == "user.add") put(w, "uuid", uuid);
          }));
        },
        done);
    if (!r.empty()) done(r);
  };
  if (cmd != "user.add" && cmd != "user.passwd") return apply("");
  std::string pw = str_arg(a, "password");
  if (pw.empty()) return done(refuse(cmd + " needs a non-empty \"password\""));
  // A yescrypt hash takes ~100 ms by design: made on a thread of its own so that other clients
  // are answered meanwhile; the edit is applied here once it is done.
  off_thread(
      [pw = std::move(pw)]() mutable {
        std::string hash = hash_password(pw);
        OPENSSL_cleanse(pw.data(), pw.size());
        return hash;
      },
      [apply, done](std::string hash) {
        if (hash.empty())
          return done(refuse("cannot hash the password (libcrypt yescrypt failed)"));
        apply(hash);
        OPENSSL_cleanse(hash.data(), hash.size());
      },
      "");
}

void Management::cmd_set_proxy(const Args& a, const Reply& done) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return done(refuse("set-proxy needs \"username\""));
  std::optional<std::string> proxy;
  if (has_str(a, "proxy") && str_arg(a, "proxy") != "none") proxy = str_arg(a, "proxy");
  std::string r = edit_user(
      name,
      [&](std::optional<User>& u) -> std::string {
        if (!u) return "no user " + name;
        if (proxy && !names_route(current_.proxies, current_.agents, *proxy))
          return "no upstream has id " + *proxy +
                 " (uringproxyctl proxy list; an agent is agent:ID, uringproxyctl agents)";
        u->external_proxy_id = proxy;
        return "";
      },
      [name, proxy, done](uint64_t generation, size_t) {
        UP_INFO("set-proxy %s %s", name.c_str(), proxy ? proxy->c_str() : "none");
        done(answer([&](Json& w) {
          put(w, "generation", generation);
          put(w, "username", name);
          put_opt(w, "external_proxy_id", proxy);
        }));
      },
      done);
  if (!r.empty()) done(r);
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
    auto u = it->external_proxy_id ? s->find_route(*it->external_proxy_id) : nullptr;
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
      auto u = usr.external_proxy_id ? s->find_route(*usr.external_proxy_id) : nullptr;
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
    const std::function<std::string(std::vector<UpstreamProxy>&)>& edit, Committed then,
    Reply refused) {
  if (store_) return edit_proxies_in_store(edit, std::move(then), std::move(refused));
  if (stamps_.unchanged()) {
    // The files are as they were read: only the proxies change, the users are shared.
    const std::string& path = current_.config.proxies_file;
    if (path.empty())
      return refuse("no proxies_file is configured (add \"proxies_file\" to " + config_path_ +
                    ")");
    std::vector<UpstreamProxy> proxies = current_.proxies;
    if (std::string why = edit(proxies); !why.empty()) return refuse(why);
    std::string text = proxies_to_json(proxies);
    std::vector<UpstreamProxy> check;
    Diagnostics cd;
    if (!parse_proxies(text, path, check, cd) || !cd.ok())
      return refuse("the edit would make the proxies file invalid", cd.errors);
    std::vector<std::string> errors;
    auto snap = snapshot_with_proxies(*snapshots_.current(), generation_ + 1, proxies, health_,
                                      errors);
    if (!snap) return refuse("the edit does not load", errors);
    std::string err;
    if (!write_file_atomic(path, text, 0600, err)) return refuse(err);
    stamps_.proxies = FileStamp::of(path);
    current_.proxies = std::move(proxies);
    publish(std::move(snap), {}, std::move(then));
    return "";
  }
  ConfigStamps stamps = ConfigStamps::take(config_path_);
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
  stamps_ = stamps.describes(next) ? std::move(stamps) : ConfigStamps{};
  stamps_.proxies = FileStamp::of(next.config.proxies_file);
  commit(std::move(snap), std::move(next), std::move(then));
  return "";
}

// A postgres node: the upstreams the edit changed or removed are written in one statement with
// its NOTIFY; once committed the edit is applied here as a file edit would be.
std::string Management::edit_proxies_in_store(
    const std::function<std::string(std::vector<UpstreamProxy>&)>& edit, Committed then,
    Reply refused) {
  if (!store_->up()) return refuse(store_->execute("", {}, nullptr));
  std::vector<UpstreamProxy> proxies = current_.proxies;
  if (std::string why = edit(proxies); !why.empty()) return refuse(why);
  std::string text = proxies_to_json(proxies);
  std::vector<UpstreamProxy> check;
  Diagnostics cd;
  if (!parse_proxies(text, "store (table upstreams)", check, cd) || !cd.ok())
    return refuse("the edit would not load", cd.errors);
  auto change = list_edit(current_.proxies, proxies, config::same_proxy);
  std::string e = store_->execute(
      store_edit_sql("upstreams", "proxies"),
      {json_ids(change.gone_ids), proxies_to_json(change.changed),
       current_.config.store.node + " upstreams"},
      [this, change, then, refused](std::string err) {
        if (!err.empty()) {
          if (refused) refused(refuse("the store did not take the edit: " + err));
          return;
        }
        std::vector<UpstreamProxy> next = applied(current_.proxies, change);
        std::vector<std::string> errors;
        auto snap = snapshot_with_proxies(*snapshots_.current(), generation_ + 1, next, health_,
                                          errors);
        if (!snap) {  // committed, but not buildable here: read the store in full
          for (const auto& x : errors) UP_ERROR("%s", x.c_str());
          store_->resync();
          if (refused) refused(refuse("committed, but this node could not apply it", errors));
          return;
        }
        current_.proxies = std::move(next);
        publish(std::move(snap), {}, then);
      });
  return e.empty() ? "" : refuse(e);
}

void Management::cmd_proxy_edit(const std::string& cmd, const Args& a, const Reply& done) {
  std::string id = str_arg(a, "id");
  if (id.empty()) return done(refuse(cmd + " needs \"id\""));
  if (cmd == "proxy.add") {
    UpstreamProxy p;
    p.id = id;
    p.name = has_str(a, "name") ? str_arg(a, "name") : id;
    std::string type = str_arg(a, "type");
    if (type == "socks5") p.type = UpstreamType::socks5;
    else if (type == "socks5s") p.type = UpstreamType::socks5s;
    else if (type == "http") p.type = UpstreamType::http;
    else if (type == "https") p.type = UpstreamType::https;
    else return done(refuse("type must be socks5, socks5s, http or https"));
    p.address = str_arg(a, "address");
    auto port = a.FindMember("port");
    if (p.address.empty() || port == a.MemberEnd() || !port->value.IsUint() ||
        port->value.GetUint() == 0 || port->value.GetUint() > 65535)
      return done(refuse("proxy.add needs \"address\" and a \"port\" from 1 to 65535"));
    p.port = static_cast<uint16_t>(port->value.GetUint());
    p.username = str_arg(a, "username");
    p.password = str_arg(a, "password");
    p.group = str_arg(a, "group");
    bool test = true;
    if (auto t = a.FindMember("test"); t != a.MemberEnd() && t->value.IsBool())
      test = t->value.GetBool();
    if (!test) return add_proxy(p, done);
    auto u = std::make_shared<Upstream>();
    u->config = p;
    if (p.type == UpstreamType::socks5s || p.type == UpstreamType::https) {
      std::string err;
      u->tls = make_client_tls_context(true, "", err);
      if (!u->tls) return done(refuse("tls: " + err));
    }
    // The probe blocks up to health_check.timeout_ms on its own thread; the answer waits for
    // it, other clients do not.
    return probe_async(std::move(u), [this, p, done](std::string err) {
      if (!err.empty())
        return done(refuse("probe failed: " + err + " (nothing written; --no-test adds it anyway)"));
      add_proxy(p, done);
    });
  }
  std::string r = edit_proxies(
      [&](std::vector<UpstreamProxy>& ps) -> std::string {
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
      },
      [cmd, id, done](uint64_t generation, size_t) {
        UP_INFO("%s %s: generation %llu", cmd.c_str(), id.c_str(),
                static_cast<unsigned long long>(generation));
        done(answer([&](Json& w) { put(w, "generation", generation); }));
      },
      done);
  if (!r.empty()) done(r);
}

void Management::add_proxy(const UpstreamProxy& p, const Reply& done) {
  std::string r = edit_proxies(
      [&](std::vector<UpstreamProxy>& ps) -> std::string {
        if (has_proxy(ps, p.id)) return "an upstream with id " + p.id + " already exists";
        ps.push_back(p);
        return "";
      },
      [id = p.id, done](uint64_t generation, size_t) {
        UP_INFO("proxy.add %s: generation %llu", id.c_str(),
                static_cast<unsigned long long>(generation));
        done(answer([&](Json& w) { put(w, "generation", generation); }));
      },
      done);
  if (!r.empty()) done(r);
}

void Management::cmd_proxy_test(const Args& a, const Reply& done) {
  std::string id = str_arg(a, "id");
  auto u = snapshots_.current()->find_upstream(id);
  if (!u) return done(refuse("no upstream has id " + id));
  probe_async(std::move(u), [done](std::string err) {
    if (!err.empty()) return done(refuse("probe failed: " + err));
    done(answer([&](Json& w) { put(w, "result", std::string("up")); }));
  });
}

void Management::cmd_connections(const Args& a, const Reply& done) {
  std::string user = str_arg(a, "user");
  ask_workers<std::vector<ConnectionInfo>>(
      [user](Worker& w) { return w.list_connections(user); },
      [done](std::vector<std::vector<ConnectionInfo>> per_worker) {
        done(answer([&](Json& w) {
          w.Key("connections");
          w.StartArray();
          for (const auto& conns : per_worker)
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
        }));
      });
}

void Management::cmd_kick(const Args& a, const Reply& done) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return done(refuse("kick needs \"username\""));
  if (std::none_of(current_.users.begin(), current_.users.end(),
                   [&](const User& u) { return u.username == name; }))
    return done(refuse("no user " + name));
  kick_everywhere(name, Result::kicked,
                  [done](size_t n) { done(answer([&](Json& w) { put(w, "closed", n); })); });
}

}  // namespace up
