#include "route/snapshot_store.h"

#include <algorithm>

namespace up {

SnapshotStore::SnapshotStore(unsigned workers) : seen_(new Seen[workers]), workers_(workers) {}

SnapshotStore::~SnapshotStore() {
  delete current_.load();
  for (const Snapshot* s : retired_) delete s;
}

void SnapshotStore::publish(std::unique_ptr<Snapshot> next) {
  std::lock_guard lock(mu_);
  const Snapshot* old = current_.exchange(next.release(), std::memory_order_acq_rel);
  if (old) retired_.push_back(old);
}

size_t SnapshotStore::reclaim() {
  std::lock_guard lock(mu_);
  uint64_t oldest_seen = UINT64_MAX;
  for (unsigned i = 0; i < workers_; ++i)
    oldest_seen = std::min(oldest_seen, seen_[i].generation.load(std::memory_order_acquire));
  // A worker that has seen generation g holds nothing older than g.
  auto it = std::remove_if(retired_.begin(), retired_.end(), [&](const Snapshot* s) {
    if (s->generation < oldest_seen) {
      delete s;
      return true;
    }
    return false;
  });
  retired_.erase(it, retired_.end());
  return retired_.size();
}

}  // namespace up
