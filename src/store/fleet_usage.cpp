#include "store/fleet_usage.h"

#include <algorithm>
#include <charconv>
#include <cstdint>

namespace up {

void FleetUsage::add(const std::string& user, int64_t period_start, uint64_t bytes) {
  if (bytes) pending_[{user, period_start}] += bytes;
}

uint64_t FleetUsage::used(const std::string& user, int64_t period_start) const {
  Key k{user, period_start};
  uint64_t n = 0;
  for (const auto* m : {&totals_, &pending_, &in_flight_})
    if (auto it = m->find(k); it != m->end()) n += it->second;
  return n;
}

std::vector<FleetUsage::Row> FleetUsage::begin_flush(const std::vector<Key>& read,
                                                     int64_t now_ms) {
  if (flushing_) return {};  // one batch at a time
  if (!retry_) {
    in_flight_.swap(pending_);
    pending_.clear();
    seq_ = std::max(seq_ + 1, now_ms);
  }
  retry_ = false;
  flushing_ = true;
  std::map<Key, uint64_t> batch = in_flight_;
  for (const Key& k : read) batch.emplace(k, 0);
  std::vector<Row> rows;
  rows.reserve(batch.size());
  for (const auto& [k, bytes] : batch) rows.push_back({k.first, k.second, bytes});
  return rows;
}

void FleetUsage::committed(const std::vector<Row>& totals) {
  totals_.clear();
  for (const Row& r : totals) totals_[{r.user, r.period_start}] = r.bytes;
  in_flight_.clear();
  flushing_ = false;
}

void FleetUsage::failed() {
  flushing_ = false;
  retry_ = true;
}

void FleetUsage::reset(const std::string& user) {
  for (auto it = totals_.lower_bound({user, INT64_MIN});
       it != totals_.end() && it->first.first == user;)
    it = totals_.erase(it);
}

// f records the batch's number for the node, and returns a row unless that number is already
// recorded (the batch committed before, its answer lost): then nothing is added. The deltas are
// added to this node's rows; the totals are the rows of every node as of the statement's
// snapshot plus what this statement adds (a data-modifying CTE's changes are not visible to the
// rest of its statement). A total another node commits meanwhile is read at the next flush.
const char* const kUsageFlushSql =
    "WITH f AS (INSERT INTO usage_flushes AS f (node, seq) VALUES ($1, $5::bigint)"
    "           ON CONFLICT (node) DO UPDATE SET seq = excluded.seq WHERE f.seq <> excluded.seq"
    "           RETURNING 1),"
    " d AS (SELECT x.username, x.period_start,"
    "         CASE WHEN EXISTS (SELECT 1 FROM f) THEN x.delta ELSE 0 END AS delta"
    "       FROM unnest($2::text[], $3::bigint[], $4::bigint[])"
    "         AS x(username, period_start, delta)),"
    " w AS (INSERT INTO usage AS u (username, node, period_start, used_bytes)"
    "       SELECT username, $1, period_start, delta FROM d WHERE delta > 0"
    "       ON CONFLICT (username, node, period_start)"
    "       DO UPDATE SET used_bytes = u.used_bytes + excluded.used_bytes)"
    " SELECT d.username, d.period_start, (d.delta + coalesce((SELECT sum(s.used_bytes)"
    "   FROM usage s WHERE s.username = d.username AND s.period_start = d.period_start), 0))"
    "   ::bigint FROM d";

std::string pg_text_array(const std::vector<std::string>& items) {
  std::string s = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) s += ',';
    s += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') s += '\\';
      s += c;
    }
    s += '"';
  }
  s += '}';
  return s;
}

std::vector<std::string> usage_flush_params(const std::string& node,
                                            const std::vector<FleetUsage::Row>& batch,
                                            int64_t seq) {
  std::vector<std::string> users;
  users.reserve(batch.size());
  std::string starts = "{", deltas = "{";
  for (size_t i = 0; i < batch.size(); ++i) {
    users.push_back(batch[i].user);
    if (i) {
      starts += ',';
      deltas += ',';
    }
    starts += std::to_string(batch[i].period_start);
    deltas += std::to_string(batch[i].bytes);
  }
  return {node, pg_text_array(users), starts + "}", deltas + "}", std::to_string(seq)};
}

bool parse_usage_totals(const std::vector<std::vector<std::string>>& rows,
                        std::vector<FleetUsage::Row>& out) {
  std::vector<FleetUsage::Row> parsed;
  parsed.reserve(rows.size());
  for (const auto& r : rows) {
    if (r.size() != 3) return false;
    FleetUsage::Row row;
    row.user = r[0];
    const std::string& s = r[1];
    const std::string& b = r[2];
    auto ps = std::from_chars(s.data(), s.data() + s.size(), row.period_start);
    auto pb = std::from_chars(b.data(), b.data() + b.size(), row.bytes);
    if (s.empty() || b.empty() || ps.ec != std::errc() || ps.ptr != s.data() + s.size() ||
        pb.ec != std::errc() || pb.ptr != b.data() + b.size())
      return false;
    parsed.push_back(std::move(row));
  }
  out = std::move(parsed);
  return true;
}

}  // namespace up
