// GET /metrics: the Prometheus text format (version 0.0.4), docs/wire.md#observability. Per-worker counters are
// collected from the workers (never locked on the data path) and summed here.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "agent/agent_registry.h"
#include "control/management.h"
#include "core/access_log.h"
#include "core/runtime.h"
#include "route/quota.h"
#include "route/snapshot_store.h"

namespace up {

namespace {

std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void header(std::string& o, const char* name, const char* type, const char* help) {
  o += "# HELP ";
  o += name;
  o += ' ';
  o += help;
  o += "\n# TYPE ";
  o += name;
  o += ' ';
  o += type;
  o += '\n';
}

void sample(std::string& o, const std::string& name_and_labels, uint64_t v) {
  o += name_and_labels;
  o += ' ';
  o += std::to_string(v);
  o += '\n';
}

void histogram(std::string& o, const char* name, const char* help, const Histogram& h) {
  header(o, name, "histogram", help);
  std::string base(name);
  uint64_t cumulative = 0;
  char le[32];
  for (size_t i = 0; i < Histogram::bounds_us.size(); ++i) {
    cumulative += h.buckets[i];
    snprintf(le, sizeof le, "%g", static_cast<double>(Histogram::bounds_us[i]) / 1e6);
    sample(o, base + "_bucket{le=\"" + le + "\"}", cumulative);
  }
  cumulative += h.buckets.back();
  sample(o, base + "_bucket{le=\"+Inf\"}", cumulative);
  char sum[64];
  snprintf(sum, sizeof sum, "%.6f", static_cast<double>(h.sum_us) / 1e6);
  o += base + "_sum " + sum + "\n";
  sample(o, base + "_count", h.count);
}

}  // namespace

// uringproxy_user_quota_remaining_bytes: the users closest to their quota get their own series
// (up to metrics.max_user_series), the rest are summed under user="_other".
void Management::quota_metrics(std::string& o) {
  o += "# HELP uringproxy_user_quota_remaining_bytes Bytes a user may still move this quota "
       "period (beyond metrics.max_user_series users: user=\"_other\").\n"
       "# TYPE uringproxy_user_quota_remaining_bytes gauge\n";
  if (fleet_usage()) fleet_view();
  int64_t now = static_cast<int64_t>(time(nullptr));
  std::vector<std::pair<uint64_t, const std::string*>> left;
  left.reserve(quota_users_.size());
  for (const QuotaUser& q : quota_users_) {
    uint64_t used = usage_.current(q.name, q.period, now).used_bytes;
    left.emplace_back(used >= q.quota_bytes ? 0 : q.quota_bytes - used, &q.name);
  }
  std::sort(left.begin(), left.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first < y.first : *x.second < *y.second;
  });
  size_t cap = current_.config.metrics_max_user_series;
  uint64_t other = 0;
  for (size_t i = 0; i < left.size(); ++i) {
    if (i >= cap) {
      other += left[i].first;
      continue;
    }
    o += "uringproxy_user_quota_remaining_bytes{user=\"" + label(*left[i].second) +
         "\"} " + std::to_string(left[i].first) + "\n";
  }
  if (left.size() > cap)
    o += "uringproxy_user_quota_remaining_bytes{user=\"_other\"} " + std::to_string(other) + "\n";
}

void Management::render_metrics(std::function<void(std::string)> then) {
  collect_stats([this, then](WorkerStats s) { then(metrics_text(s)); });
}

std::string Management::metrics_text(WorkerStats& s) {
  const Snapshot* snap = snapshots_.current();
  std::string o;
  o.reserve(4096);

  header(o, "uringproxy_connections_total", "counter", "Client connections accepted.");
  std::vector<std::string> keys;
  for (const auto& [k, v] : s.accepted) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  for (const auto& k : keys) {
    size_t tab = k.find('\t');
    sample(o,
           "uringproxy_connections_total{listener=\"" + label(k.substr(0, tab)) +
               "\",protocol=\"" + label(k.substr(tab + 1)) + "\"}",
           s.accepted[k]);
  }
  header(o, "uringproxy_connections_active", "gauge", "Client connections open now.");
  sample(o, "uringproxy_connections_active", s.connections_active);

  header(o, "uringproxy_bytes_total", "counter", "Bytes relayed, up = client to target.");
  sample(o, "uringproxy_bytes_total{direction=\"up\"}", s.bytes_up);
  sample(o, "uringproxy_bytes_total{direction=\"down\"}", s.bytes_down);

  // Per-user series are capped: the busiest users get their own, the rest are summed.
  header(o, "uringproxy_user_bytes_total", "counter",
         "Bytes relayed per user (beyond metrics.max_user_series users: user=\"_other\").");
  std::vector<std::pair<std::string, UserTally>> users(s.users.begin(), s.users.end());
  std::sort(users.begin(), users.end(), [](const auto& a, const auto& b) {
    uint64_t x = a.second.bytes_up + a.second.bytes_down;
    uint64_t y = b.second.bytes_up + b.second.bytes_down;
    return x != y ? x > y : a.first < b.first;
  });
  size_t cap = current_.config.metrics_max_user_series;
  UserTally other;
  bool any_other = false;
  for (size_t i = 0; i < users.size(); ++i) {
    if (i >= cap) {
      other.bytes_up += users[i].second.bytes_up;
      other.bytes_down += users[i].second.bytes_down;
      any_other = true;
      continue;
    }
    std::string u = label(users[i].first);
    sample(o, "uringproxy_user_bytes_total{user=\"" + u + "\",direction=\"up\"}",
           users[i].second.bytes_up);
    sample(o, "uringproxy_user_bytes_total{user=\"" + u + "\",direction=\"down\"}",
           users[i].second.bytes_down);
  }
  if (any_other) {
    sample(o, "uringproxy_user_bytes_total{user=\"_other\",direction=\"up\"}", other.bytes_up);
    sample(o, "uringproxy_user_bytes_total{user=\"_other\",direction=\"down\"}", other.bytes_down);
  }

  quota_metrics(o);

  header(o, "uringproxy_auth_failures_total", "counter", "Failed logins.");
  sample(o, "uringproxy_auth_failures_total", s.auth_failures);

  header(o, "uringproxy_auth_blocked_total", "counter",
         "Logins refused because the client address is blocked after repeated failures.");
  sample(o, "uringproxy_auth_blocked_total", rt_.auth_blocked.load());
  header(o, "uringproxy_connections_refused_total", "counter",
         "Connections closed at once because limits.max_connections was reached.");
  sample(o, "uringproxy_connections_refused_total", rt_.refused_over_cap.load());
  header(o, "uringproxy_access_log_dropped_total", "counter",
         "Access-log lines dropped: a worker's buffer was full (slow disk) or the write failed.");
  sample(o, "uringproxy_access_log_dropped_total", access_log_.dropped());

  header(o, "uringproxy_route_total", "counter",
         "Connections by route: direct, an upstream id, or reject.");
  keys.clear();
  for (const auto& [k, v] : s.routes) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  for (const auto& k : keys) sample(o, "uringproxy_route_total{route=\"" + label(k) + "\"}", s.routes[k]);

  header(o, "uringproxy_upstream_up", "gauge", "1 if the upstream is enabled and healthy.");
  keys.clear();
  for (const auto& [id, u] : snap->upstreams) keys.push_back(id);
  std::sort(keys.begin(), keys.end());
  for (const auto& id : keys)
    sample(o, "uringproxy_upstream_up{proxy=\"" + label(id) + "\"}",
           snap->find_upstream(id)->available() ? 1 : 0);

  {
    // Reverse agents (agent/agent_registry.h): every group with an agent has a sample, 0 when
    // none is connected, so an alert can watch a group going empty. The headers are always
    // there, as for every other metric.
    std::vector<AgentInfo> live = rt_.agents->list();
    std::map<std::string, uint64_t> by_group;
    for (const auto& [id, a] : snap->agents) by_group[a.config.group] += 0;
    for (const AgentInfo& i : live)
      if (i.connected_since_s && snap->find_agent(i.id)) ++by_group[i.group];
    header(o, "uringproxy_agents_connected", "gauge",
           "Reverse agents with an authenticated control link, by group.");
    for (const auto& [g, n] : by_group)
      sample(o, "uringproxy_agents_connected{group=\"" + label(g) + "\"}", n);
    header(o, "uringproxy_agent_tunnels_total", "counter", "Tunnels carried by each agent.");
    for (const AgentInfo& i : live)
      sample(o, "uringproxy_agent_tunnels_total{agent=\"" + label(i.id) + "\"}", i.tunnels_total);
    header(o, "uringproxy_agent_idle_connections", "gauge",
           "Idle reverse connections each agent keeps ready.");
    for (const AgentInfo& i : live)
      sample(o, "uringproxy_agent_idle_connections{agent=\"" + label(i.id) + "\"}", i.idle);
  }

  histogram(o, "uringproxy_connect_duration_seconds",
            "Time from route decision to a usable target (direct connect or upstream handshake).",
            s.connect);

  header(o, "uringproxy_tls_handshakes_total", "counter",
         "TLS listener handshakes by result: ok, resumed, failed, timeout.");
  keys.clear();
  for (const auto& [k, v] : s.tls_handshakes) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  for (const auto& k : keys) {
    size_t tab = k.find('\t');
    sample(o, "uringproxy_tls_handshakes_total{listener=\"" + label(k.substr(0, tab)) +
                  "\",result=\"" + label(k.substr(tab + 1)) + "\"}",
           s.tls_handshakes[k]);
  }
  histogram(o, "uringproxy_tls_handshake_duration_seconds",
            "Time from accept to a finished TLS handshake on a TLS listener.", s.tls_handshake);
  header(o, "uringproxy_ktls_available", "gauge",
         "1 if the kernel has the TLS ULP (kTLS); 0: TLS is relayed in user space.");
  sample(o, "uringproxy_ktls_available", rt_.ktls ? 1 : 0);

  header(o, "uringproxy_udp_associations_active", "gauge", "SOCKS5 UDP associations open now.");
  sample(o, "uringproxy_udp_associations_active", s.udp_associations_active);
  header(o, "uringproxy_udp_datagrams_total", "counter",
         "Datagrams relayed by UDP associations; up is client to target.");
  sample(o, "uringproxy_udp_datagrams_total{direction=\"up\"}", s.udp_datagrams_up);
  sample(o, "uringproxy_udp_datagrams_total{direction=\"down\"}", s.udp_datagrams_down);
  header(o, "uringproxy_udp_dropped_total", "counter", "Datagrams the UDP relay dropped, by reason.");
  for (size_t i = 0; i < s.udp_dropped.size(); ++i)
    sample(o, std::string("uringproxy_udp_dropped_total{reason=\"") +
                  to_string(static_cast<UdpDrop>(i)) + "\"}",
           s.udp_dropped[i]);

  if (store_) {
    header(o, "uringproxy_store_up", "gauge",
           "1 if the PostgreSQL store is connected; 0: serving the last snapshot.");
    sample(o, "uringproxy_store_up", store_->up() ? 1 : 0);
  }
  header(o, "uringproxy_config_generation", "gauge", "Generation of the configuration in force.");
  sample(o, "uringproxy_config_generation", generation_);
  return o;
}

}  // namespace up
