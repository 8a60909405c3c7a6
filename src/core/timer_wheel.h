#pragma once
// A hashed timing wheel with lazy deadlines. A connection sits in one slot; refreshing its
// deadline is a plain store (no list surgery on the data path). When its slot comes due the
// wheel checks the real deadline and either fires or re-files it further on.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace up {

struct TimerNode {
  TimerNode* next = nullptr;
  TimerNode* prev = nullptr;
  uint64_t deadline_ms = 0;  // 0 = no deadline
  bool linked = false;
  void* owner = nullptr;  // what fires
};

class TimerWheel {
 public:
  static constexpr uint64_t slot_ms = 64;
  static constexpr size_t slots = 1024;  // ~65 s span; longer deadlines are re-filed on the way

  explicit TimerWheel(uint64_t now_ms) : wheel_(slots), last_tick_(now_ms / slot_ms) {
    for (auto& head : wheel_) head.next = head.prev = &head;
  }

  // Files `n` by its deadline_ms (must be set). Already-linked nodes are left where they are:
  // the wheel re-files them lazily when their old slot comes due.
  void arm(TimerNode* n) {
    if (n->linked || n->deadline_ms == 0) return;
    uint64_t tick = n->deadline_ms / slot_ms;
    if (tick <= last_tick_) tick = last_tick_ + 1;
    if (tick - last_tick_ >= slots) tick = last_tick_ + slots - 1;
    TimerNode& head = wheel_[tick % slots];
    n->next = &head;
    n->prev = head.prev;
    head.prev->next = n;
    head.prev = n;
    n->linked = true;
  }

  // Moves the deadline. Later deadlines are a plain store (the common case: activity on a
  // tunnel); an earlier one re-files the node so it cannot fire late.
  void set_deadline(TimerNode* n, uint64_t deadline_ms) {
    bool earlier = deadline_ms != 0 && (n->deadline_ms == 0 || deadline_ms < n->deadline_ms);
    n->deadline_ms = deadline_ms;
    if (earlier) {
      disarm(n);
      arm(n);
    } else if (!n->linked) {
      arm(n);
    }
  }

  void disarm(TimerNode* n) {
    if (!n->linked) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = nullptr;
    n->linked = false;
  }

  // Calls fire(node) for every node whose deadline has passed; re-files the others.
  template <typename Fire>
  void advance(uint64_t now_ms, Fire&& fire) {
    uint64_t target = now_ms / slot_ms;
    while (last_tick_ < target) {
      ++last_tick_;
      TimerNode& head = wheel_[last_tick_ % slots];
      // Detach the slot's list first: fire() may close connections and arm() may refile.
      TimerNode* first = head.next;
      TimerNode* end = &head;
      if (first == end) continue;
      head.prev->next = nullptr;
      head.next = head.prev = &head;
      for (TimerNode* n = first; n && n != end;) {
        TimerNode* next = n->next;
        n->linked = false;
        n->next = n->prev = nullptr;
        if (n->deadline_ms == 0) {
          // no deadline any more: stays unlinked
        } else if (n->deadline_ms <= now_ms) {
          fire(n);
        } else {
          arm(n);
        }
        n = next;
      }
    }
  }

 private:
  std::vector<TimerNode> wheel_;  // sentinel heads of circular lists
  uint64_t last_tick_;
};

}  // namespace up
