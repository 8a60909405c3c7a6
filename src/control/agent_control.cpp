// uringproxyctl agents / agent add|del|enable|disable|kick (docs/uringproxyctl.md): the agents
// in force joined with what the registry knows of their links, and edits of agents_file (atomic
// write) or, on a postgres node, of the store's table agents (one statement with its NOTIFY);
// then the snapshot is published: a deleted or disabled agent's control link sees it within a
// quarter second and closes, and its idle connections are closed at once.
#include <crypt.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <ctime>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "agent/agent_registry.h"
#include "config/config_equal.h"
#include "control/atomic_file.h"
#include "control/control_answer.h"
#include "control/management.h"
#include "control/store_edit.h"
#include "core/log.h"
#include "core/runtime.h"
#include "proto/agent_frame.h"
#include "route/snapshot.h"
#include "route/snapshot_store.h"

namespace up {

using namespace control_answer;

namespace {

// sha512-crypt: an agent's secret is a long random machine secret, not a human password, so a
// slow hash buys nothing and would cost every reverse connection's first check.
std::string hash_secret(const std::string& secret) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn("$6$", 0, nullptr, 0, salt, sizeof salt)) return "";
  auto data = std::make_unique<crypt_data>();
  const char* h = crypt_rn(secret.c_str(), salt, data.get(), sizeof *data);
  std::string out = h && h[0] == '$' ? h : "";
  OPENSSL_cleanse(data.get(), sizeof *data);
  return out;
}

std::vector<Agent>::iterator find_agent(std::vector<Agent>& agents, const std::string& id) {
  return std::find_if(agents.begin(), agents.end(), [&](const Agent& a) { return a.id == id; });
}

// A link the change ends: the agent is gone or disabled, or authenticated with another secret
// or joined another group than it has now.
bool ends_link(const Agent& before, const Agent* after) {
  return !after || (before.enabled && !after->enabled) ||
         after->secret_hash != before.secret_hash || after->group != before.group;
}

std::string iso_time(uint64_t unix_s) {
  if (!unix_s) return "";
  time_t t = static_cast<time_t>(unix_s);
  tm g{};
  gmtime_r(&t, &g);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &g);
  return buf;
}

}  // namespace

std::string Management::cmd_agents() {
  std::vector<AgentInfo> live = rt_.agents->list();
  return answer([&](Json& w) {
    w.Key("agents");
    w.StartArray();
    for (const Agent& a : current_.agents) {
      auto it = std::find_if(live.begin(), live.end(),
                             [&](const AgentInfo& i) { return i.id == a.id; });
      bool connected = it != live.end() && it->connected_since_s != 0;
      w.StartObject();
      put(w, "id", a.id);
      put(w, "group", a.group);
      w.Key("enabled");
      w.Bool(a.enabled);
      w.Key("connected");
      w.Bool(connected);
      put(w, "address", connected ? it->address : std::string());
      put(w, "version", connected ? it->version : std::string());
      put(w, "idle", it != live.end() ? it->idle : 0);
      put(w, "tunnels", it != live.end() ? it->tunnels : 0);
      put(w, "tunnels_total", it != live.end() ? it->tunnels_total : 0);
      put(w, "connected_since", connected ? iso_time(it->connected_since_s) : std::string());
      w.EndObject();
    }
    w.EndArray();
  });
}

std::string Management::edit_agents(const std::function<std::string(std::vector<Agent>&)>& edit,
                                     Committed then, Reply refused) {
  if (store_) return edit_agents_in_store(edit, std::move(then), std::move(refused));
  ConfigStamps stamps = ConfigStamps::take(config_path_);
  ConfigSet next;
  Diagnostics d;
  if (!load_config_set(config_path_, next, d) || !d.ok())
    return refuse("the files on disk do not load; fix them (uringproxy --check) first", d.errors);
  if (next.config.agents_file.empty())
    return refuse("no agents_file is configured (add \"agents_file\" to " + config_path_ + ")");
  if (std::string why = edit(next.agents); !why.empty()) return refuse(why);
  std::string text = agents_to_json(next.agents);
  std::vector<Agent> check;
  Diagnostics cd;
  if (!parse_agents(text, next.config.agents_file, check, cd) || !cd.ok())
    return refuse("the edit would make the agents file invalid", cd.errors);
  std::vector<std::string> errors;
  auto snap = prepare(next, errors);
  if (!snap) return refuse("the edit does not load", errors);
  std::string err;
  if (!write_file_atomic(next.config.agents_file, text, 0600, err)) return refuse(err);
  stamps_ = stamps.describes(next) ? std::move(stamps) : ConfigStamps{};
  commit(std::move(snap), std::move(next), std::move(then));
  return "";
}

// A postgres node: the agents the edit added, changed or removed are written in one statement
// with its NOTIFY ("NODE agents": the other nodes read the table back); once committed the edit
// is applied here to the agents in force, which another node's edit may have changed meanwhile.
std::string Management::edit_agents_in_store(
    const std::function<std::string(std::vector<Agent>&)>& edit, Committed then, Reply refused) {
  if (!store_->up()) return refuse(store_->execute("", {}, nullptr));
  std::vector<Agent> agents = current_.agents;
  if (std::string why = edit(agents); !why.empty()) return refuse(why);
  auto change = list_edit(current_.agents, agents, config::same_agent);
  std::string put = agents_to_json(change.changed);
  std::vector<Agent> check;
  Diagnostics cd;
  if (!parse_agents(put, "store (table agents)", check, cd) || !cd.ok())
    return refuse("the edit would not load", cd.errors);
  std::string e = store_->execute(
      store_edit_sql("agents", "agents"),
      {json_ids(change.gone_ids), std::move(put), current_.config.store.node + " agents"},
      [this, change, then, refused](std::string err) {
        if (!err.empty()) {
          if (refused) refused(refuse("the store did not take the edit: " + err));
          return;
        }
        apply_agents(applied(current_.agents, change), then);
      });
  return e.empty() ? "" : refuse(e);
}

void Management::apply_agents(std::vector<Agent> next, Committed then) {
  auto snap = snapshot_with_agents(*snapshots_.current(), generation_ + 1, current_.proxies, next,
                                   health_);
  std::vector<Agent> before = std::move(current_.agents);
  current_.agents = std::move(next);
  publish(std::move(snap), {}, std::move(then));
  close_ended_agent_links(before);
}

// The link would close itself within a quarter second on the new snapshot; the group loses
// the agent now. Every path that changes the agents (an edit, a reload, another node's edit,
// a full read of the store) ends here after it published.
void Management::close_ended_agent_links(std::vector<Agent>& before) {
  for (const Agent& b : before) {
    auto at = find_agent(current_.agents, b.id);
    if (ends_link(b, at != current_.agents.end() ? &*at : nullptr) && rt_.agents->kick(b.id))
      UP_INFO("agent %s: link closed (removed, disabled or changed)", b.id.c_str());
  }
}

void Management::cmd_agent(const std::string& cmd, const Args& a, const Reply& done) {
  std::string id = str_arg(a, "id");
  if (!agent::valid_agent_id(id))
    return done(refuse(cmd + " needs \"id\": 1-64 letters, digits, '-', '_' or '.'"));
  if (cmd == "agent.kick") {
    bool was = rt_.agents->kick(id);
    UP_INFO("agent kick %s: %s", id.c_str(), was ? "link closed" : "not connected");
    return done(answer([&](Json& w) {
      put(w, "id", id);
      w.Key("kicked");
      w.Bool(was);
    }));
  }
  std::string group = str_arg(a, "group");
  auto apply = [this, cmd, id, group, done](const std::string& hash) {
    std::string r = edit_agents(
        [&](std::vector<Agent>& agents) -> std::string {
          auto it = std::find_if(agents.begin(), agents.end(),
                                 [&](const Agent& x) { return x.id == id; });
          if (cmd == "agent.add") {
            if (it != agents.end()) return "agent " + id + " already exists";
            Agent n;
            n.id = id;
            n.secret_hash = hash;
            n.group = group;
            agents.push_back(std::move(n));
            return "";
          }
          if (it == agents.end()) return "no agent " + id + " (uringproxyctl agents)";
          if (cmd == "agent.del") {
            std::string route = std::string(agent_route_prefix) + id;
            for (const User& u : current_.users)
              if (u.external_proxy_id == route)
                return "user " + u.username + " is routed through " + route +
                       " (uringproxyctl set-proxy " + u.username + " none first)";
            agents.erase(it);
          }
          if (cmd == "agent.enable") it->enabled = true;
          if (cmd == "agent.disable") it->enabled = false;
          return "";
        },
        [this, cmd, id, done](uint64_t generation, size_t) {
          // The link closes itself once it sees the new snapshot; the group loses the agent now.
          if (cmd == "agent.del" || cmd == "agent.disable") rt_.agents->kick(id);
          UP_INFO("%s %s: generation %llu", cmd.c_str(), id.c_str(),
                  static_cast<unsigned long long>(generation));
          done(answer([&](Json& w) {
            put(w, "generation", generation);
            put(w, "id", id);
          }));
        },
        done);
    if (!r.empty()) done(r);
  };
  if (cmd != "agent.add") return apply("");
  if (group.empty()) return done(refuse("agent.add needs \"group\""));
  std::string secret = str_arg(a, "secret");
  if (secret.empty()) return done(refuse("agent.add needs a non-empty \"secret\""));
  off_thread(
      [secret = std::move(secret)]() mutable {
        std::string hash = hash_secret(secret);
        OPENSSL_cleanse(secret.data(), secret.size());
        return hash;
      },
      [apply, done](std::string hash) {
        if (hash.empty()) return done(refuse("cannot hash the secret (libcrypt failed)"));
        apply(hash);
      },
      "");
}

}  // namespace up
