#pragma once
// Fleet-wide usage on a postgres node (docs/configuration.md#quotas): the bytes this node
// counted per user and period and has not yet added to the store's `usage` table, the batch
// in flight, and the fleet totals the last flush read back. Pure bookkeeping: the management
// thread owns it and StoreLink runs the statement.
//
// Counted bytes are added once: a batch carries a sequence number the statement records per
// node (table usage_flushes); a batch that was refused or whose answer was lost with the
// connection is sent again as it was, with its number, before anything counted since, and the
// statement adds it only if that number is not the one recorded last.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace up {

class FleetUsage {
 public:
  struct Row {
    std::string user;
    int64_t period_start = 0;  // Unix seconds (route/quota.h)
    uint64_t bytes = 0;        // in a batch: the delta; read back: the fleet's total
  };
  using Key = std::pair<std::string, int64_t>;  // user, period start

  void add(const std::string& user, int64_t period_start, uint64_t bytes);
  // The fleet's usage of the user in that period as this node knows it: the total last read
  // plus what this node counted since (pending and in flight).
  uint64_t used(const std::string& user, int64_t period_start) const;

  // Starts a flush: the batch that did not go through, else what is pending. The batch also
  // names every key of `read` (delta 0 unless counted) so that their totals are read back.
  // Each key once. `now_ms` (wall clock) seeds the batch's number: above the last one, and
  // unlikely to be a number a previous run of this node recorded last.
  std::vector<Row> begin_flush(const std::vector<Key>& read, int64_t now_ms);
  bool flushing() const { return flushing_; }
  int64_t seq() const { return seq_; }  // the number of the batch begin_flush returned
  // The store took the batch; `totals` are the fleet's totals after it (they replace every
  // total known before: a period or a user the store no longer has is zero).
  void committed(const std::vector<Row>& totals);
  // No answer that it committed (refused, not sent, or lost with the connection): the same
  // batch, same number, is sent at the next flush.
  void failed();

  // The store zeroed the user's usage (quota reset): the totals read before are forgotten.
  void reset(const std::string& user);
  // Forgets every user for whom keep(name) is false (deleted, or their quota removed).
  template <typename Keep>
  void prune(Keep&& keep) {
    for (auto* m : {&pending_, &in_flight_, &totals_})
      for (auto it = m->begin(); it != m->end();)
        it = keep(it->first.first) ? std::next(it) : m->erase(it);
  }
  const std::map<Key, uint64_t>& pending() const { return pending_; }

 private:
  std::map<Key, uint64_t> pending_;
  std::map<Key, uint64_t> in_flight_;
  std::map<Key, uint64_t> totals_;
  bool flushing_ = false;
  bool retry_ = false;  // in_flight_ did not go through: send it again, same seq_
  int64_t seq_ = 0;
};

// One statement adds a batch to the usage table (this node's row per user and period) and
// returns the fleet's total of every row of the batch: username, period_start, used_bytes.
// Parameters: usage_flush_params(): $1 node, $2 users, $3 period starts, $4 deltas, $5 seq.
extern const char* const kUsageFlushSql;
std::vector<std::string> usage_flush_params(const std::string& node,
                                            const std::vector<FleetUsage::Row>& batch,
                                            int64_t seq);
// PostgreSQL array literals (text parameters): {"a","b\"c"} and {1,2}.
std::string pg_text_array(const std::vector<std::string>& items);
// The answer's rows as Rows; false when one does not parse (the answer is not used).
bool parse_usage_totals(const std::vector<std::vector<std::string>>& rows,
                        std::vector<FleetUsage::Row>& out);

}  // namespace up
