// Agent mode's main thread: load agent.json, start the proxy's workers with a snapshot that
// holds only the agent's egress settings (ACL, DNS, source address), then supervise the links
// (agent/gateway_links.h). The supervisor never touches a socket of the data path; it resolves
// the gateway's name (blocking getaddrinfo is fine here, never on a worker) and opens links
// when agent/link_planner.h says so.
#include "agent/agent_main.h"

#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "agent/agent_config.h"
#include "agent/gateway_links.h"
#include "agent/link_planner.h"
#include "config/config_equal.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/ring.h"
#include "core/worker.h"
#include "core/worker_pool.h"
#include "route/snapshot.h"
#include "route/snapshot_store.h"
#include "route/upstream_health.h"
#include "route/user_limits.h"
#include "upstream/tls_layer.h"

namespace up {

namespace {

// The reverse links' TLS context. Each tunnel uses up a link, so each costs one handshake on
// both ends: resumed TLS 1.2 (no key exchange, ~70 µs for both) instead of TLS 1.3, which even
// resumed runs X25519 on both ends (~400 µs; OpenSSL 3.0 cannot negotiate psk_ke between its
// own client and server). The price: no forward secrecy between the links of one session
// (at most an hour). docs/agent-protocol.md#tls has the whole argument.
std::shared_ptr<SSL_CTX> reverse_tls_context(const AgentConfig& ac, std::string& err) {
  std::shared_ptr<SSL_CTX> ctx = make_client_tls_context(ac.tls.verify, ac.tls.ca_file, err);
  if (!ctx || !ac.tls.reverse_resumption) return ctx;
  // AES-128-GCM first: the cheapest suite with AES-NI (the relay encrypts every tunnel byte).
  if (SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx.get(),
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
    err = "cannot restrict reverse links to TLS 1.2 AEAD suites";
    return nullptr;
  }
  return ctx;
}

bool load(const std::string& path, AgentConfig& ac, std::shared_ptr<SSL_CTX>& tls,
          std::shared_ptr<SSL_CTX>& reverse_tls, bool to_log) {
  Diagnostics diag;
  bool ok = load_agent_config(path, ac, diag);
  if (ok) {
    std::string err;
    tls = make_client_tls_context(ac.tls.verify, ac.tls.ca_file, err);
    if (!tls) diag.errors.push_back(path + ": tls.ca_file: " + err);
    else if (!(reverse_tls = reverse_tls_context(ac, err)))
      diag.errors.push_back(path + ": tls: " + err);
  }
  for (const auto& w : diag.warnings) {
    if (to_log) UP_WARN("%s", w.c_str());
    else fprintf(stderr, "warning: %s\n", w.c_str());
  }
  for (const auto& e : diag.errors) {
    if (to_log) UP_ERROR("%s", e.c_str());
    else fprintf(stderr, "error: %s\n", e.c_str());
  }
  return ok && diag.ok();
}

// Each tunnel holds two sockets: as many fds as the hard limit allows.
rlim_t raise_fd_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  rlim_t before = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (rl.rlim_cur != before && setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = before;
  return rl.rlim_cur;
}

bool resolve(const AgentConfig& ac, sockaddr_storage& out, socklen_t& len) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(ac.gateway_port);
  int rc = getaddrinfo(ac.gateway_host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    UP_WARN("agent %s: gateway %s does not resolve: %s", ac.id.c_str(), ac.gateway.c_str(),
            gai_strerror(rc));
    return false;
  }
  memcpy(&out, res->ai_addr, res->ai_addrlen);
  len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// Closes every link listed under `user` on every worker (idle reverse links, or the control link).
void close_links(Runtime& rt, const char* user) {
  for (auto& w : rt.workers) {
    Worker* wp = w.get();
    wp->mailbox().post([wp, user] { wp->kick(user, Result::shutdown); });
  }
}

static_assert(int(LinkObservation::down) == GatewayLinks::down &&
              int(LinkObservation::connecting) == GatewayLinks::connecting &&
              int(LinkObservation::up) == GatewayLinks::up);

// The workers' snapshot: only the agent's egress settings (ACL, source address, timeouts).
struct Egress {
  SnapshotStore& snapshots;
  HealthBoard& health;
  UserBoard& users;
  uint64_t generation = 0;

  bool publish(const AgentConfig& ac, std::vector<std::string>& errors) {
    ConfigSet set;
    set.config = egress_config(ac);
    auto snap = build_snapshot(set, generation + 1, health, users, errors);
    if (!snap) return false;
    ++generation;
    snapshots.publish(std::move(snap));
    return true;
  }
};

std::shared_ptr<const LinkIdentity> make_identity(const AgentConfig& ac,
                                                  std::shared_ptr<SSL_CTX> tls,
                                                  std::shared_ptr<SSL_CTX> reverse_tls,
                                                  uint64_t epoch) {
  auto id = std::make_shared<LinkIdentity>();
  id->id = ac.id;
  id->secret = ac.secret;
  id->software = std::string("uringproxy ") + URINGPROXY_VERSION;
  id->server_name = ac.tls.server_name;
  id->tls = std::move(tls);
  id->reverse_tls = std::move(reverse_tls);
  id->epoch = epoch;
  return id;
}

// Whether links made under `a` must be replaced under `b`: another gateway or another
// identity, or another way to check the gateway.
bool links_differ(const AgentConfig& a, const AgentConfig& b) {
  return a.gateway != b.gateway || a.id != b.id || a.secret != b.secret ||
         a.tls.ca_file != b.tls.ca_file || a.tls.server_name != b.tls.server_name ||
         a.tls.verify != b.tls.verify || a.tls.reverse_resumption != b.tls.reverse_resumption;
}

class Supervisor {
 public:
  Supervisor(const AgentConfig& ac, GatewayLinks& links, Egress& egress)
      : ac_(ac), links_(links), egress_(egress),
        plan_(ac.idle_connections, std::random_device{}()) {}

  // Until SIGTERM or SIGINT.
  void run(int sigfd) {
    for (;;) {
      pollfd fds[2] = {{sigfd, POLLIN, 0}, {links_.wake_fd(), POLLIN, 0}};
      poll(fds, 2, 200);
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo si{};
        if (read(sigfd, &si, sizeof si) == sizeof si) {
          if (si.ssi_signo != SIGHUP) return;
          reload();
        }
      }
      if (fds[1].revents & POLLIN) {
        uint64_t n;
        ssize_t r = read(links_.wake_fd(), &n, sizeof n);
        (void)r;
      }
      turn(monotonic_ms());
    }
  }

  uint32_t shutdown_grace_ms() const { return ac_.shutdown_grace_ms; }

 private:
  // SIGHUP: agent.json (and the secret and CA files) read again. Egress settings apply to new
  // tunnels at once; a new gateway, id, secret or TLS setting ends the control link, so the
  // agent reconnects everything under the new one (open tunnels go on). Nothing changes when
  // the file does not load.
  void reload() {
    AgentConfig next;
    std::shared_ptr<SSL_CTX> tls, reverse_tls;
    if (!load(ac_.path, next, tls, reverse_tls, true)) {
      UP_ERROR("%s: not reloaded; the agent goes on as it was", ac_.path.c_str());
      return;
    }
    std::vector<std::string> errors;
    if (!egress_.publish(next, errors)) {
      for (const auto& e : errors) UP_ERROR("%s", e.c_str());
      UP_ERROR("%s: not reloaded; the agent goes on as it was", ac_.path.c_str());
      return;
    }
    if (next.workers != ac_.workers)
      UP_WARN("%s: workers changed: it takes a restart of the agent", ac_.path.c_str());
    auto same_text = [](const SocketAddress& a, const SocketAddress& b) {
      return a.text == b.text;
    };
    if (!config::same_list(next.dns.servers, ac_.dns.servers, same_text) ||
        next.dns.cache_max_ttl_s != ac_.dns.cache_max_ttl_s)
      UP_WARN("%s: dns changed: it takes a restart of the agent", ac_.path.c_str());
    bool relink = links_differ(ac_, next);
    // The new contexts hold a renewed CA file even when nothing else changed.
    links_.set_identity(make_identity(next, tls, reverse_tls, ++epoch_));
    plan_.set_idle_target(next.idle_connections);
    ac_ = std::move(next);
    if (relink) {
      // The control link's end makes the planner reconnect everything (turn()).
      close_links(*links_.rt, GatewayLinks::control_user);
    }
    UP_INFO("%s reloaded: agent %s, gateway %s, %u idle connection(s)%s", ac_.path.c_str(),
            ac_.id.c_str(), ac_.gateway.c_str(), ac_.idle_connections,
            relink ? "; reconnecting to the gateway" : "");
  }

  void turn(uint64_t now) {
    LinkObservation seen;
    seen.control = static_cast<LinkObservation::Control>(
        links_.control.load(std::memory_order_acquire));
    seen.idle = links_.reverse_idle.load(std::memory_order_relaxed);
    seen.opening = links_.reverse_opening.load(std::memory_order_relaxed);
    seen.failures = links_.reverse_failures.load(std::memory_order_relaxed);
    LinkActions act = plan_.turn(now, seen);
    if (act.reconnect_everything) {
      UP_WARN("agent %s: control link down; reconnecting everything", ac_.id.c_str());
      links_.generation.fetch_add(1, std::memory_order_acq_rel);
      close_links(*links_.rt, GatewayLinks::idle_user);
    }
    if (act.dial_control) {
      sockaddr_storage a{};
      socklen_t len = 0;
      if (!resolve(ac_, a, len)) return plan_.dial_failed(now);
      links_.set_gateway(a, len);
      links_.control.store(GatewayLinks::connecting, std::memory_order_release);
      links_.open(true);
    }
    for (int i = 0; i < act.open_reverse; ++i) {
      links_.reverse_opening.fetch_add(1, std::memory_order_relaxed);
      links_.open(false);
    }
  }

  AgentConfig ac_;
  GatewayLinks& links_;
  Egress& egress_;
  LinkPlanner plan_;
  uint64_t epoch_ = 1;
};

}  // namespace

int check_agent_config(const std::string& config_path) {
  AgentConfig ac;
  std::shared_ptr<SSL_CTX> tls, reverse_tls;
  if (!load(config_path, ac, tls, reverse_tls, false)) {
    fprintf(stderr, "%s: the agent configuration was not accepted\n", config_path.c_str());
    return 1;
  }
  printf("%s: OK (agent %s, gateway %s, %u idle connection(s))\n", config_path.c_str(),
         ac.id.c_str(), ac.gateway.c_str(), ac.idle_connections);
  return 0;
}

int run_agent(const std::string& config_path, int workers) {
  AgentConfig ac;
  std::shared_ptr<SSL_CTX> tls, reverse_tls;
  if (!load(config_path, ac, tls, reverse_tls, true)) {
    UP_ERROR("%s: not starting (run uringproxy agent --check --config %s)", config_path.c_str(),
             config_path.c_str());
    return 1;
  }
  RingFeatures features;
  if (!probe_ring_features(features)) return 1;
  rlim_t fds = raise_fd_limit();

  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);

  std::vector<int> cpus = allowed_cpus();
  unsigned nworkers = workers >= 0 ? static_cast<unsigned>(workers) : ac.workers;
  if (nworkers == 0) nworkers = static_cast<unsigned>(cpus.size());

  SnapshotStore snapshots(nworkers);
  HealthBoard health;
  UserBoard users;
  Egress egress{snapshots, health, users};
  {
    std::vector<std::string> errs;
    if (!egress.publish(ac, errs)) {
      for (const auto& e : errs) UP_ERROR("%s", e.c_str());
      return 1;
    }
  }
  GatewayLinks links;  // outlives the workers: their links refer to it
  Runtime rt;
  rt.snapshots = &snapshots;
  rt.users = &users;
  rt.max_connections = fds > 256 ? static_cast<uint32_t>((fds - 128) / 2) : 64;
  links.rt = &rt;
  links.set_identity(make_identity(ac, tls, reverse_tls, 1));

  std::vector<std::string> errors = start_workers(rt, nworkers, cpus);
  if (!errors.empty()) {
    for (const auto& e : errors) UP_ERROR("%s", e.c_str());
    stop_workers(rt, 0, false);
    return 1;
  }
  UP_INFO("ready: agent %s, %u worker(s), gateway %s, %u idle connection(s), io_uring %s",
          ac.id.c_str(), nworkers, ac.gateway.c_str(), ac.idle_connections,
          features.missing.empty() ? "complete" : "partial");
  Supervisor supervisor(ac, links, egress);
  supervisor.run(sigfd);
  uint32_t grace_ms = supervisor.shutdown_grace_ms();
  UP_INFO("agent %s: stopping; open tunnels may finish within %u ms",
          links.identity()->id.c_str(), grace_ms);
  links.generation.fetch_add(1, std::memory_order_acq_rel);  // no replacements from here on
  close_links(rt, GatewayLinks::idle_user);
  close_links(rt, GatewayLinks::control_user);
  stop_workers(rt, grace_ms, false);
  UP_INFO("agent %s: %llu reverse link(s) authenticated, %llu of them resumed a TLS session",
          links.identity()->id.c_str(),
          static_cast<unsigned long long>(links.reverse_handshakes.load()),
          static_cast<unsigned long long>(links.reverse_resumed.load()));
  close(sigfd);
  UP_INFO("stopped");
  return 0;
}

}  // namespace up
