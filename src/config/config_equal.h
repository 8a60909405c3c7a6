#pragma once
// Field-by-field equality of loaded records: round-trip checks in tests and fuzzers, and what
// an edit or a reload changed.
#include "uringproxy/config.h"

namespace up::config {

inline bool same_on_failure(const OnFailure& a, const OnFailure& b) {
  return a.kind == b.kind && a.upstream_id == b.upstream_id;
}

inline bool same_user(const User& a, const User& b) {
  return a.username == b.username && a.password_hash == b.password_hash && a.uuid == b.uuid &&
         a.email == b.email && a.external_proxy_id == b.external_proxy_id &&
         a.groups == b.groups && a.enabled == b.enabled &&
         a.max_connections == b.max_connections && a.bandwidth_bps == b.bandwidth_bps &&
         a.allow == b.allow && a.deny == b.deny && a.quota_bytes == b.quota_bytes &&
         a.quota_period == b.quota_period;
}

inline bool same_agent(const Agent& a, const Agent& b) {
  return a.id == b.id && a.secret_hash == b.secret_hash && a.group == b.group &&
         a.enabled == b.enabled;
}

inline bool same_proxy(const UpstreamProxy& a, const UpstreamProxy& b) {
  return a.id == b.id && a.name == b.name && a.type == b.type && a.address == b.address &&
         a.port == b.port && a.username == b.username && a.password == b.password &&
         a.enabled == b.enabled && a.group == b.group &&
         a.tls.server_name == b.tls.server_name && a.tls.verify == b.tls.verify &&
         a.tls.ca_file == b.tls.ca_file && same_on_failure(a.on_failure, b.on_failure);
}

template <typename T, typename Eq>
bool same_list(const std::vector<T>& a, const std::vector<T>& b, Eq eq) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!eq(a[i], b[i])) return false;
  return true;
}

}  // namespace up::config
