// The command tree: every command of docs/uringproxyctl.md as a CLI11 subcommand whose callback records how
// to build its request (`user add` -> {"cmd":"user.add",...}). Passwords are read only after
// parsing succeeded, and only from stdin (or a terminal prompt for user add/passwd).
#include "ctl/cli.h"

#include <stdio.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ctl/execute.h"
#include "ctl/password.h"
#include "ctl/request.h"
#include "ctl/store_import.h"

namespace up::ctl {
namespace {

constexpr int kDefaultTimeoutMs = 30000;
constexpr int kProbeTimeoutMs = 120000;  // proxy add / proxy test wait for the daemon's probe

using Builder = std::function<std::unique_ptr<Request>(std::string& error)>;

struct Args {
  std::string name;    // NAME / USER positional
  std::string id;      // ID positional (proxy del/enable/disable/test), --id (proxy add)
  std::string route;   // set-proxy USER ID|none
  bool password_stdin = false;
  std::string proxy;   // user add --proxy
  std::vector<std::string> groups;  // user add --group (repeatable)
  std::string uuid;    // user add --uuid
  std::string type, address, username, group, label;  // proxy add
  uint16_t port = 0;
  bool no_test = false;
  std::string user_filter;  // connections --user
  uint64_t quota_bytes = 0;  // quota set USER BYTES PERIOD
  std::string period;
  std::string import_users, import_proxies, import_agents;  // store import
};

std::optional<std::string> id_or_none(const std::string& v) {
  if (v == "none" || v == "null" || v.empty()) return std::nullopt;
  return v;
}

struct Tree {
  CLI::App app{"Control a running uringproxy through its control socket.", "uringproxyctl"};
  Target target;
  double timeout_s = 0;
  Args a;
  Builder chosen;
  std::function<int()> local;  // a command run here rather than by the daemon (store import)
  int timeout_ms = kDefaultTimeoutMs;

  // A command whose request is {"cmd": cmd} plus what `fill` adds from the parsed arguments.
  CLI::App* command(CLI::App& parent, const std::string& name, const std::string& help,
                    const std::string& cmd, std::function<void(Request&)> fill = nullptr,
                    int timeout = kDefaultTimeoutMs) {
    CLI::App* sub = parent.add_subcommand(name, help);
    sub->callback([this, cmd, fill, timeout] {
      chosen = [cmd, fill](std::string&) {
        auto r = std::make_unique<Request>(cmd);
        if (fill) fill(*r);
        return r;
      };
      timeout_ms = timeout;
    });
    return sub;
  }

  void build() {
    app.footer(
        "The socket is --socket PATH, else control.socket of --config FILE (relative to that "
        "file's directory), else run/control.sock.\n"
        "Exit codes: 0 success; 1 the daemon refused (its error on stderr); 2 a usage error or "
        "the daemon could not be reached.\n"
        "Passwords are read only from stdin (--password-stdin) or a terminal prompt, never "
        "from the command line.");
    app.set_version_flag("--version", std::string("uringproxyctl ") + URINGPROXY_VERSION);
    auto* sock = app.add_option("--socket", target.socket, "control socket path")
                     ->type_name("PATH");
    auto* cfg = app.add_option("--config", target.config,
                               "read control.socket from this uringproxy config file")
                    ->type_name("FILE");
    sock->excludes(cfg);
    app.add_flag("--json", target.json, "print the daemon's answer as is (one JSON object)");
    app.add_option("--timeout", timeout_s,
                   "seconds to wait for the answer (default 30; 120 for proxy add/test)")
        ->check(CLI::Range(0.1, 3600.0))
        ->type_name("SECONDS");
    app.require_subcommand(1);
    app.fallthrough();  // global options may follow the command too

    command(app, "status", "version, uptime, workers, config generation, active connections",
            "status");
    command(app, "reload",
            "re-read config, users and proxies (an invalid file changes nothing; every error is "
            "reported)",
            "reload");
    command(app, "stats", "totals and per-user connections and bytes", "stats");

    build_user();
    build_routes();
    build_proxy();

    auto* conns = command(app, "connections", "list live tunnels", "connections", [this](Request& r) {
      if (!a.user_filter.empty()) r.str("user", a.user_filter);
    });
    conns->add_option("--user", a.user_filter, "only this user's tunnels")->type_name("USER");
    auto* kick = command(app, "kick", "close all of a user's tunnels", "kick",
                         [this](Request& r) { r.str("username", a.name); });
    kick->add_option("USER", a.name, "user name")->required();
    build_quota();
    build_store();
    build_agents();
  }

  void build_agents() {
    command(app, "agents", "list reverse agents (agents_file or the store) and their links",
            "agents");
    CLI::App* agent =
        app.add_subcommand("agent", "add and control reverse agents (agents_file or the store)");
    agent->require_subcommand(1);
    CLI::App* add = agent->add_subcommand("add", "add an agent (its secret read from stdin)");
    add->add_option("ID", a.id, "agent id")->required();
    add->add_option("--group", a.group, "the group the agent serves")->required()->type_name("G");
    add->add_flag("--secret-stdin", a.password_stdin,
                  "read the agent's secret as one line from stdin")
        ->required();
    add->callback([this] {
      chosen = [this](std::string& error) -> std::unique_ptr<Request> {
        std::string secret;
        if (!read_password(true, false, "agent add", secret, error)) return nullptr;
        auto r = std::make_unique<Request>("agent.add");
        r->str("id", a.id).str("group", a.group).str("secret", secret);
        wipe(secret);
        return r;
      };
    });
    auto id_cmd = [this, agent](const char* name, const char* help, const char* cmd) {
      auto* sub = command(*agent, name, help, cmd, [this](Request& r) { r.str("id", a.id); });
      sub->add_option("ID", a.id, "agent id")->required();
    };
    id_cmd("del", "delete an agent (its link closes within a second)", "agent.del");
    id_cmd("enable", "enable an agent", "agent.enable");
    id_cmd("disable", "disable an agent (its link closes within a second)", "agent.disable");
    id_cmd("kick", "close an agent's link now (it reconnects)", "agent.kick");
  }

  void build_store() {
    CLI::App* store = app.add_subcommand("store", "the PostgreSQL store (store in the config)");
    store->require_subcommand(1);
    CLI::App* imp = store->add_subcommand(
        "import", "load users.json, external_proxy.json and the agents file (default: the "
                  "files --config names) into the store, in one transaction; needs --config");
    imp->add_option("--users", a.import_users, "users file")->type_name("F");
    imp->add_option("--proxies", a.import_proxies, "upstream proxies file")->type_name("F");
    imp->add_option("--agents", a.import_agents, "agents file")->type_name("F");
    imp->callback([this] {
      local = [this]() -> int {
        return store_import(target.config, a.import_users, a.import_proxies, a.import_agents);
      };
    });
  }

  void build_quota() {
    auto* usage = command(app, "usage", "bytes used this period, quota and when it resets",
                          "usage", [this](Request& r) {
                            if (!a.name.empty()) r.str("username", a.name);
                          });
    usage->add_option("USER", a.name, "only this user");
    CLI::App* quota = app.add_subcommand("quota", "set and reset per-user byte quotas");
    quota->require_subcommand(1);
    auto* set = command(*quota, "set",
                        "give a user a byte quota per UTC day, week or month (0 = none); "
                        "written to users.json",
                        "quota.set", [this](Request& r) {
                          r.str("username", a.name).uint("quota_bytes", a.quota_bytes);
                          r.str("period", a.period);
                        });
    set->add_option("USER", a.name, "user name")->required();
    set->add_option("BYTES", a.quota_bytes, "bytes per period, both directions (0 = no quota)")
        ->required();
    set->add_option("PERIOD", a.period, "day, week or month (UTC)")
        ->required()
        ->check(CLI::IsMember({"day", "week", "month"}));
    auto* reset = command(*quota, "reset", "count a user's usage this period from zero",
                          "quota.reset", [this](Request& r) { r.str("username", a.name); });
    reset->add_option("USER", a.name, "user name")->required();
  }

  void build_user() {
    CLI::App* user = app.add_subcommand("user", "list and edit users (users.json)");
    user->require_subcommand(1);
    command(*user, "list", "list users", "user.list");

    CLI::App* add = user->add_subcommand("add", "add a user (password from stdin or a prompt)");
    add->add_option("NAME", a.name, "user name")->required();
    add->add_flag("--password-stdin", a.password_stdin,
                  "read the password as one line from stdin");
    add->add_option("--proxy", a.proxy, "external proxy id for this user (default: direct)")
        ->type_name("ID");
    add->add_option("--group", a.groups, "a group the user may use (repeatable)")
        ->type_name("G")
        ->allow_extra_args(false);
    add->add_option("--uuid", a.uuid, "the user's VLESS id (default: a new random one, shown)")
        ->type_name("UUID");
    add->callback([this] {
      timeout_ms = kDefaultTimeoutMs;
      chosen = [this](std::string& error) -> std::unique_ptr<Request> {
        std::string pw;
        if (!read_password(a.password_stdin, true, "user add", pw, error)) return nullptr;
        auto r = std::make_unique<Request>("user.add");
        r->str("username", a.name).str("password", pw).str_or_null("proxy", id_or_none(a.proxy));
        if (!a.groups.empty()) r->strings("groups", a.groups);
        if (!a.uuid.empty()) r->str("uuid", a.uuid);
        wipe(pw);
        return r;
      };
    });

    auto* del = command(*user, "del", "delete a user (closes their tunnels)", "user.del",
                        [this](Request& r) { r.str("username", a.name); });
    del->add_option("NAME", a.name, "user name")->required();

    CLI::App* passwd = user->add_subcommand("passwd", "change a user's password (closes their tunnels)");
    passwd->add_option("NAME", a.name, "user name")->required();
    passwd->add_flag("--password-stdin", a.password_stdin,
                     "read the new password as one line from stdin");
    passwd->callback([this] {
      timeout_ms = kDefaultTimeoutMs;
      chosen = [this](std::string& error) -> std::unique_ptr<Request> {
        std::string pw;
        if (!read_password(a.password_stdin, true, "user passwd", pw, error)) return nullptr;
        auto r = std::make_unique<Request>("user.passwd");
        r->str("username", a.name).str("password", pw);
        wipe(pw);
        return r;
      };
    });

    auto* en = command(*user, "enable", "enable a user", "user.enable",
                       [this](Request& r) { r.str("username", a.name); });
    en->add_option("NAME", a.name, "user name")->required();
    auto* dis = command(*user, "disable", "disable a user (closes their tunnels)", "user.disable",
                        [this](Request& r) { r.str("username", a.name); });
    dis->add_option("NAME", a.name, "user name")->required();
  }

  void build_routes() {
    auto* set = command(app, "set-proxy",
                        "route a user's new connections through an external proxy, or 'none' "
                        "for direct (open tunnels are kept)",
                        "set-proxy", [this](Request& r) {
                          r.str("username", a.name).str_or_null("proxy", id_or_none(a.route));
                        });
    set->add_option("USER", a.name, "user name")->required();
    set->add_option("ID", a.route, "external proxy id, or none")->required();
    auto* show = command(app, "show-proxy", "show a user's external proxy", "show-proxy",
                         [this](Request& r) { r.str("username", a.name); });
    show->add_option("USER", a.name, "user name")->required();
    command(app, "list-proxy-assignments", "every user's external proxy",
            "list-proxy-assignments");
  }

  void build_proxy() {
    CLI::App* proxy =
        app.add_subcommand("proxy", "list, add and test external proxies (external_proxy.json)");
    proxy->require_subcommand(1);
    command(*proxy, "list", "list external proxies", "proxy.list");

    CLI::App* add = proxy->add_subcommand(
        "add", "add an external proxy (probed first unless --no-test; nothing is written when "
               "the probe fails)");
    add->add_option("--id", a.id, "proxy id")->required();
    add->add_option("--type", a.type, "socks5, socks5s, http or https")
        ->required()
        ->check(CLI::IsMember({"socks5", "socks5s", "http", "https"}));
    add->add_option("--address", a.address, "host name or IP address")->required();
    add->add_option("--port", a.port, "TCP port")->required()->check(CLI::Range(1, 65535));
    add->add_option("--username", a.username, "user name at the proxy");
    add->add_flag("--password-stdin", a.password_stdin,
                  "read the proxy's password as one line from stdin");
    add->add_option("--group", a.group, "group this proxy serves")->type_name("G");
    add->add_option("--name", a.label, "display name")->type_name("N");
    add->add_flag("--no-test", a.no_test, "skip the connectivity probe");
    add->callback([this] {
      timeout_ms = kProbeTimeoutMs;
      chosen = [this](std::string& error) -> std::unique_ptr<Request> {
        std::string pw;
        if (a.password_stdin && !read_password(true, false, "proxy add", pw, error))
          return nullptr;
        auto r = std::make_unique<Request>("proxy.add");
        r->str("id", a.id).str("type", a.type).str("address", a.address).uint("port", a.port);
        if (!a.username.empty()) r->str("username", a.username);
        if (a.password_stdin) r->str("password", pw);
        if (!a.group.empty()) r->str("group", a.group);
        if (!a.label.empty()) r->str("name", a.label);
        r->boolean("test", !a.no_test);
        wipe(pw);
        return r;
      };
    });

    auto id_cmd = [this, proxy](const char* name, const char* help, const char* cmd,
                                int timeout = kDefaultTimeoutMs) {
      auto* sub = command(*proxy, name, help, cmd, [this](Request& r) { r.str("id", a.id); },
                          timeout);
      sub->add_option("ID", a.id, "proxy id")->required();
    };
    id_cmd("del", "delete an external proxy (refused while a user is assigned to it)",
           "proxy.del");
    id_cmd("enable", "enable an external proxy", "proxy.enable");
    id_cmd("disable", "disable an external proxy", "proxy.disable");
    id_cmd("test", "probe an external proxy now", "proxy.test", kProbeTimeoutMs);
  }
};

}  // namespace

int run(int argc, char** argv) {
  Tree t;
  t.build();
  try {
    t.app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = t.app.exit(e);  // prints help/version (rc 0) or the error
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (t.local) return t.local();
  if (!t.chosen) {
    fprintf(stderr, "uringproxyctl: no command given (see --help)\n");
    return kExitUsage;
  }
  std::string error;
  std::unique_ptr<Request> req = t.chosen(error);
  if (!req) {
    fprintf(stderr, "uringproxyctl: %s\n", error.c_str());
    return kExitUsage;
  }
  t.target.timeout_ms =
      t.timeout_s > 0 ? static_cast<int>(t.timeout_s * 1000) : t.timeout_ms;
  return execute(t.target, *req);
}

}  // namespace up::ctl
