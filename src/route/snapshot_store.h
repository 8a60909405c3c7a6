#pragma once
// RCU for routing snapshots. The management thread publishes a new snapshot with a pointer
// swap; each worker reads the current pointer at the top of its loop turn and records the
// generation it saw, which also says "I hold no older snapshot". A retired snapshot is freed
// once every worker has seen a newer generation.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "route/snapshot.h"

namespace up {

class SnapshotStore {
 public:
  explicit SnapshotStore(unsigned workers);
  ~SnapshotStore();

  // Management side (serialised by the caller or by the internal mutex).
  void publish(std::unique_ptr<Snapshot> next);
  // Frees retired snapshots no worker can still hold; returns how many remain retired.
  size_t reclaim();
  const Snapshot* current() const { return current_.load(std::memory_order_acquire); }

  // Worker side: call once per loop turn. Never blocks.
  const Snapshot* enter(unsigned worker) {
    const Snapshot* s = current_.load(std::memory_order_acquire);
    seen_[worker].generation.store(s->generation, std::memory_order_release);
    return s;
  }
  // A worker that exits no longer holds anything.
  void leave(unsigned worker) {
    seen_[worker].generation.store(UINT64_MAX, std::memory_order_release);
  }

 private:
  struct alignas(64) Seen {
    std::atomic<uint64_t> generation{0};
  };
  std::atomic<const Snapshot*> current_{nullptr};
  std::unique_ptr<Seen[]> seen_;
  unsigned workers_;
  std::mutex mu_;  // management side only
  std::vector<const Snapshot*> retired_;
};

}  // namespace up
