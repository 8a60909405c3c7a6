#include "control/daemon.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "agent/agent_registry.h"
#include "auth/auth_guard.h"
#include "auth/password_verifier.h"
#include "core/access_log.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/ring.h"
#include "core/worker.h"
#include "core/worker_pool.h"
#include "control/atomic_file.h"
#include "control/config_stamps.h"
#include "control/management.h"
#include "route/health_checker.h"
#include "route/snapshot_store.h"
#include "store/pg_link.h"
#include "store/pg_schema.h"
#include "tls/ktls_probe.h"
#include "uringproxy/config.h"

namespace up {

namespace {

void print_diagnostics(const Diagnostics& d) {
  for (const auto& w : d.warnings) UP_WARN("%s", w.c_str());
  for (const auto& e : d.errors) UP_ERROR("%s", e.c_str());
}

// limits.max_connections, else what the fd limit allows: each tunnel holds two sockets and,
// in flight, a pipe pair; keep a margin for listeners, DNS and the management side.
uint32_t connection_cap(const Config& c) {
  if (c.limits.max_connections) return c.limits.max_connections;
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 1u << 20;
  return rl.rlim_cur > 256 ? static_cast<uint32_t>((rl.rlim_cur - 128) / 3) : 32;
}

// As many fds as the hard limit allows: each tunnel holds two sockets and, in flight, a pipe.
void raise_fd_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t before = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (rl.rlim_cur != before && setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = before;
  UP_INFO("open-file limit %llu (hard %llu): about %llu tunnels",
          static_cast<unsigned long long>(rl.rlim_cur),
          static_cast<unsigned long long>(rl.rlim_max),
          static_cast<unsigned long long>(rl.rlim_cur / 2));
}

// "user" / "group": after every socket is bound, give up root. setuid/setgid apply to every
// thread (glibc synchronises them), so the workers drop too.
bool drop_privileges(const Config& c, const std::string& control_socket) {
  if (c.run_as_user.empty() && c.run_as_group.empty()) return true;
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (!c.run_as_user.empty()) {
    passwd* pw = getpwnam(c.run_as_user.c_str());
    if (!pw) {
      UP_ERROR("user: no such user \"%s\" (create it, or remove \"user\")", c.run_as_user.c_str());
      return false;
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  if (!c.run_as_group.empty()) {
    group* gr = getgrnam(c.run_as_group.c_str());
    if (!gr) {
      UP_ERROR("group: no such group \"%s\"", c.run_as_group.c_str());
      return false;
    }
    gid = gr->gr_gid;
  }
  if (geteuid() != 0) {
    if (uid == geteuid() && gid == getegid()) return true;
    UP_ERROR("user/group: only root can switch to %s; start as root or remove them",
             c.run_as_user.c_str());
    return false;
  }
  // The control socket (and its directory) stay usable by the daemon after the switch.
  if (chown(control_socket.c_str(), uid, gid) != 0)
    UP_WARN("cannot hand %s to uid %u: %m", control_socket.c_str(), uid);
  if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
    UP_ERROR("cannot drop privileges to uid %u gid %u: %m", uid, gid);
    return false;
  }
  if (setuid(0) == 0) {
    UP_ERROR("privileges were not dropped (setuid(0) still succeeds)");
    return false;
  }
  UP_INFO("running as uid %u gid %u", uid, gid);
  return true;
}

}  // namespace


int migrate(const std::string& config_path) {
  Config c;
  Diagnostics diag;
  std::string text, err;
  if (!read_config_file(config_path, kDefaultMaxConfigFileBytes, text, err)) {
    fprintf(stderr, "error: %s: %s\n", config_path.c_str(), err.c_str());
    return 1;
  }
  bool ok = parse_config(text, config_path, c, diag);
  for (const auto& e : diag.errors) fprintf(stderr, "error: %s\n", e.c_str());
  if (!ok || !diag.ok()) return 1;
  if (c.store.type != StoreConfig::Type::postgres) {
    fprintf(stderr, "error: %s: --migrate needs \"store\": {\"type\": \"postgres\", ...}; the "
                    "JSON store has no schema\n", config_path.c_str());
    return 1;
  }
  std::string done;
  if (std::string why = migrate_store(c.store, done); !why.empty()) {
    fprintf(stderr, "error: %s: %s\n", config_path.c_str(), why.c_str());
    return 1;
  }
  printf("%s\n", done.c_str());
  return 0;
}

int check_config(const std::string& config_path) {
  ConfigSet set;
  Diagnostics diag;
  bool ok = load_config_set(config_path, set, diag);
  for (const auto& w : diag.warnings) fprintf(stderr, "warning: %s\n", w.c_str());
  for (const auto& e : diag.errors) fprintf(stderr, "error: %s\n", e.c_str());
  if (ok && diag.ok()) {
    // What only building a snapshot reads: TLS certificates, keys and CA files.
    HealthBoard health;
    UserBoard users;
    if (!build_snapshot(set, 1, health, users, diag.errors))
      for (const auto& e : diag.errors) fprintf(stderr, "error: %s\n", e.c_str());
  }
  if (!ok || !diag.ok()) {
    fprintf(stderr, "%s: %zu error(s); the configuration was not accepted\n",
            config_path.c_str(), diag.errors.size());
    return 1;
  }
  printf("%s: OK (%zu listener(s), %zu user(s), %zu upstream(s))\n", config_path.c_str(),
         set.config.listeners.size(), set.users.size(), set.proxies.size());
  return 0;
}

int run_daemon(const DaemonOptions& opts) {
  ConfigSet set;
  Diagnostics diag;
  ConfigStamps stamps = ConfigStamps::take(opts.config_path);
  bool loaded = load_config_set(opts.config_path, set, diag);
  if (!stamps.describes(set)) stamps = {};
  // The PostgreSQL store: users, upstreams, agents and its groups are read from the database
  // (on this thread, before any worker runs) and checked by the files' loaders.
  std::unique_ptr<StoreLink> store;
  if (loaded && diag.ok() && set.config.store.type == StoreConfig::Type::postgres) {
    store = std::make_unique<StoreLink>(set.config.store);
    StoreLink::Records first;
    if (std::string e = store->open(15000, first); !e.empty()) {
      UP_ERROR("%s: not starting: %s", opts.config_path.c_str(), e.c_str());
      return 1;
    }
    apply_store_agents(first.agents, set, diag);  // first: the groups check counts them
    apply_store_records(first.users, first.proxies, first.groups, set, diag);
  }
  print_diagnostics(diag);
  if (!loaded || !diag.ok()) {
    UP_ERROR("%s: not starting (%zu error(s); run uringproxy --check --config %s)",
             opts.config_path.c_str(), diag.errors.size(), opts.config_path.c_str());
    return 1;
  }
  RingFeatures features;
  if (!probe_ring_features(features)) return 1;
  raise_fd_limit();

  // Signals are taken synchronously by this (management) thread; workers never see them.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&sigs, s);
  sigaddset(&sigs, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  std::vector<int> cpus = allowed_cpus();
  unsigned nworkers = opts.workers >= 0 ? static_cast<unsigned>(opts.workers)
                                        : set.config.workers;
  if (nworkers == 0) nworkers = static_cast<unsigned>(cpus.size());

  // Edits interrupted by a crash (kill -9, power loss) leave their temporary copies behind.
  for (const std::string& f : {set.config.users_file, set.config.proxies_file})
    if (size_t n = remove_stale_temporaries(f))
      UP_INFO("removed %zu temporary file(s) an interrupted edit of %s left", n, f.c_str());

  AccessLog access_log(nworkers);  // a buffer per worker
  std::string err;
  if (!access_log.open(set.config.access_log, err)) {
    UP_ERROR("%s", err.c_str());
    return 1;
  }
  SnapshotStore snapshots(nworkers);
  HealthBoard health;
  UserBoard users;
  AuthGuard auth_guard;
  AgentRegistry agents;  // outlives the workers: it may hold idle reverse connections
  uint64_t generation = 1;
  {
    std::vector<std::string> errs;
    auto first = build_snapshot(set, generation, health, users, errs);
    if (!first) {
      for (const auto& e : errs) UP_ERROR("%s", e.c_str());
      return 1;
    }
    snapshots.publish(std::move(first));
  }
  HealthChecker checker;
  checker.update(*snapshots.current());
  // Declared after the runtime so it is destroyed first: its threads finish their jobs (and
  // post to the workers' mailboxes) while the workers still exist.
  Runtime rt;
  if (const char* relay = getenv("URINGPROXY_RELAY"); relay && *relay) {
    std::string_view r = relay;
    if (r == "splice" || r == "buffers") {
      rt.relay = r == "splice" ? Runtime::Relay::splice : Runtime::Relay::buffers;
      UP_WARN("URINGPROXY_RELAY=%s: plain tunnels use only that relay path (for measurement)",
              relay);
    } else if (r != "adaptive") {
      UP_WARN("URINGPROXY_RELAY=%s ignored: expected adaptive, splice or buffers", relay);
    }
  }
  if (const char* n = getenv("URINGPROXY_RELAY_BUFFERS"); n && *n) {
    unsigned long v = strtoul(n, nullptr, 10);
    if (v >= 1 && v <= 32768 && (v & (v - 1)) == 0) {
      rt.relay_buffers = static_cast<unsigned>(v);
      UP_WARN("URINGPROXY_RELAY_BUFFERS=%lu: relay buffers per worker (for tests)", v);
    } else {
      UP_WARN("URINGPROXY_RELAY_BUFFERS=%s ignored: expected a power of two, 1-32768", n);
    }
  }
  PasswordVerifier verifier(std::max(1u, nworkers / 2));
  if (!set.users.empty()) verifier.match_cost_of(set.users.front().password_hash);
  rt.users = &users;
  rt.auth_guard = &auth_guard;
  rt.agents = &agents;
  rt.max_connections = connection_cap(set.config);
  rt.snapshots = &snapshots;
  rt.verifier = &verifier;
  rt.access_log = &access_log;
  KtlsSupport ktls = probe_ktls();
  rt.ktls = ktls.available;
  UP_INFO("kTLS: %s", ktls.why.c_str());

  std::vector<std::string> errors = start_workers(rt, nworkers, cpus);
  if (!errors.empty()) {
    for (const auto& e : errors) UP_ERROR("%s", e.c_str());
    stop_workers(rt, 0, false);
    return 1;
  }
  // The users move to the management thread (a copy of 100,000 users costs ~0.1 s at start-up).
  const Config config = set.config;
  const size_t nusers = set.users.size(), nproxies = set.proxies.size();
  Management mgmt(opts.config_path, std::move(set), std::move(stamps), rt, snapshots, health,
                  checker, access_log);
  if (!mgmt.open() || !drop_privileges(config, config.control_socket)) {
    stop_workers(rt, 0, true);
    return 1;
  }
  if (store) mgmt.adopt_store(std::move(store));
  for (const auto& l : config.listeners)
    if (!l.tls && l.protocol != Protocol::vless)
      UP_INFO("listening on %s (%s, %s)", l.listen.text.c_str(), l.name.c_str(),
              to_string(l.protocol));
  UP_INFO("ready: %u worker(s), %zu user(s), %zu upstream(s), auth %s, io_uring %s", nworkers,
          nusers, nproxies, config.auth_required ? "required" : "none",
          features.missing.empty() ? "complete" : "partial");
  uint32_t grace_ms = mgmt.run();
  stop_workers(rt, grace_ms, true);
  mgmt.final_flush();  // what the tunnels moved since the last flush, drain included
  UP_INFO("stopped");
  return 0;
}

}  // namespace up
