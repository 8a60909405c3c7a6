#pragma once
// A worker's answers by name, kept until their TTL runs out and bounded in count: expired names
// are swept on a timer, not only when someone asks for them again, so a stream of names asked
// once (a crawler, a scan) cannot grow it without end.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace up {

struct ResolvedAddress {
  sockaddr_storage addr;  // port 0; the caller sets it
  socklen_t len;
};

class DnsCache {
 public:
  explicit DnsCache(size_t max_entries, uint64_t sweep_every_ms = 10000)
      : max_entries_(max_entries), sweep_every_ms_(sweep_every_ms) {}

  // The addresses for `name`, or nullptr if absent or expired (an expired entry is dropped).
  const std::vector<ResolvedAddress>* find(const std::string& name, uint64_t now_ms);
  // When full, expired entries go first, then arbitrary ones: a cache miss costs one query.
  void put(const std::string& name, std::vector<ResolvedAddress> addrs, uint64_t expires_ms,
           uint64_t now_ms);
  // Drops every expired entry, at most once per sweep_every_ms; cheap to call every tick.
  void sweep(uint64_t now_ms);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::vector<ResolvedAddress> addrs;
    uint64_t expires_ms;
  };
  void drop_expired(uint64_t now_ms);

  size_t max_entries_;
  uint64_t sweep_every_ms_;
  uint64_t last_sweep_ms_ = 0;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace up
