#include "upstream/dns_cache.h"

namespace up {

const std::vector<ResolvedAddress>* DnsCache::find(const std::string& name, uint64_t now_ms) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return nullptr;
  if (it->second.expires_ms > now_ms) return &it->second.addrs;
  entries_.erase(it);
  return nullptr;
}

void DnsCache::put(const std::string& name, std::vector<ResolvedAddress> addrs,
                   uint64_t expires_ms, uint64_t now_ms) {
  if (max_entries_ == 0) return;
  if (entries_.size() >= max_entries_ && entries_.find(name) == entries_.end()) {
    // A full sweep at most once per interval keeps a burst of new names from costing
    // O(entries) each; in between, an arbitrary entry makes room.
    if (now_ms - last_sweep_ms_ >= sweep_every_ms_) drop_expired(now_ms);
    if (entries_.size() >= max_entries_) entries_.erase(entries_.begin());
  }
  entries_[name] = Entry{std::move(addrs), expires_ms};
}

void DnsCache::sweep(uint64_t now_ms) {
  if (now_ms - last_sweep_ms_ >= sweep_every_ms_) drop_expired(now_ms);
}

void DnsCache::drop_expired(uint64_t now_ms) {
  last_sweep_ms_ = now_ms;
  for (auto it = entries_.begin(); it != entries_.end();)
    it = it->second.expires_ms <= now_ms ? entries_.erase(it) : std::next(it);
}

}  // namespace up
