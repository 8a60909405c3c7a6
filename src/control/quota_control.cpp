// Per-user byte quotas on the management thread (docs/configuration.md#usersjson): the workers
// count bytes per user as they relay; every store.flush_interval_ms this adds what they counted
// since the last flush to the user's usage for the period, refuses users over quota (a flag
// the workers read when a tunnel is routed) and closes their open tunnels.
// On a postgres node the usage is the fleet's: the counts are added to the store's usage table
// in one statement that reads the fleet's totals back (store/fleet_usage.h), and usage_ is then
// a view of those totals plus what this node has not flushed yet.
#include <time.h>

#include <unordered_set>

#include "control/control_answer.h"
#include "control/management.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/worker.h"
#include "route/quota.h"
#include "route/user_limits.h"
#include "store/fleet_usage.h"

namespace up {

using namespace control_answer;

namespace {
int64_t now_unix_s() { return static_cast<int64_t>(time(nullptr)); }
}  // namespace

bool Management::open_usage() {
  usage_path_ = usage_file_for_config();
  if (!usage_path_.empty()) {
    std::string err;
    if (!load_usage(usage_path_, usage_, err)) {
      UP_ERROR("%s", err.c_str());
      return false;
    }
  }
  worker_seen_.assign(rt_.workers.size(), {});
  refresh_quotas(true);
  return true;
}

bool Management::fleet_usage() const {
  return current_.config.store.type == StoreConfig::Type::postgres;
}

std::string Management::usage_file_for_config() const {
  // A postgres node keeps usage in the store's usage table, never in a file.
  return current_.config.users_file.empty() || fleet_usage() ? std::string()
                                            : usage_file_for(current_.config.users_file);
}

void Management::refresh_quotas(bool initial) {
  // A reload that moved users_file moves the usage file with it (written at the next change).
  if (std::string path = usage_file_for_config(); path != usage_path_) {
    usage_path_ = std::move(path);
    usage_changed_ = true;
  }
  std::vector<QuotaUser> next;
  StringMap<size_t> index;
  for (const User& u : current_.users) {
    if (!u.quota_bytes) continue;
    index.emplace(u.username, next.size());
    next.push_back({u.username, u.quota_bytes, u.quota_period, rt_.users->get(u.username)});
  }
  for (const QuotaUser& q : quota_users_) {
    if (index.count(q.name)) continue;
    // No quota any more: let them in, and forget what the workers had counted, so bytes moved
    // meanwhile are not charged if a quota comes back.
    q.state->over_quota.store(false, std::memory_order_relaxed);
    for (auto& seen : worker_seen_) seen.erase(q.name);
  }
  // The workers' counters start at zero with the daemon; a user given a quota later is counted
  // from the first flush after (the bytes of at most one flush interval go uncounted).
  if (initial)
    for (auto& seen : worker_seen_)
      for (const QuotaUser& q : next) seen[q.name] = 0;
  quota_users_ = std::move(next);
  quota_index_ = std::move(index);
  size_t before = usage_.entries().size();
  usage_.prune([this](const std::string& name) { return quota_index_.count(name) != 0; });
  fleet_.prune([this](const std::string& name) { return quota_index_.count(name) != 0; });
  if (usage_.entries().size() != before) usage_changed_ = true;
  check_quotas();
  if (!initial) save_usage_if_changed();
}

void Management::refresh_quota_of(const std::string& name, const User* u) {
  auto at = quota_index_.find(name);
  if (u && u->quota_bytes) {
    QuotaUser q{name, u->quota_bytes, u->quota_period, rt_.users->get(name)};
    size_t i;
    if (at != quota_index_.end()) {
      i = at->second;
      quota_users_[i] = std::move(q);
    } else {
      i = quota_users_.size();
      quota_index_.emplace(name, i);
      quota_users_.push_back(std::move(q));
    }
    check_quota(quota_users_[i], now_unix_s());
  } else if (at != quota_index_.end()) {
    // As refresh_quotas: no quota any more, so let them in and forget what was counted.
    size_t i = at->second;
    quota_users_[i].state->over_quota.store(false, std::memory_order_relaxed);
    for (auto& seen : worker_seen_) seen.erase(name);
    quota_index_.erase(at);
    if (i + 1 != quota_users_.size()) {
      quota_users_[i] = std::move(quota_users_.back());
      quota_index_[quota_users_[i].name] = i;
    }
    quota_users_.pop_back();
    if (usage_.find(name)) {
      usage_.reset(name);
      usage_changed_ = true;
    }
    fleet_.prune([&](const std::string& n) { return n != name; });
  }
  save_usage_if_changed();
}

void Management::flush_usage() {
  if (quota_users_.empty() || flush_pending_) return;
  auto names = std::make_shared<std::vector<std::string>>();
  names->reserve(quota_users_.size());
  for (const QuotaUser& q : quota_users_) names->push_back(q.name);
  flush_pending_ = true;
  ask_workers<std::vector<uint64_t>>(
      [names](Worker& w) {
        std::vector<uint64_t> out(names->size());
        const auto& users = w.stats().users;
        for (size_t i = 0; i < names->size(); ++i)
          if (auto it = users.find((*names)[i]); it != users.end())
            out[i] = it->second.bytes_up + it->second.bytes_down;
        return out;
      },
      [this, names](std::vector<std::vector<uint64_t>> per_worker) {
        flush_pending_ = false;
        add_worker_counts(*names, per_worker);
        check_quotas();
        if (fleet_usage())
          flush_to_store();
        else
          save_usage_if_changed();
      });
}

void Management::final_flush() {
  if (quota_users_.empty()) return;
  // The workers have been joined: their counters are read here, not through their mailboxes.
  // An ask still unanswered is dropped with the loop; worker_seen_ says what it had counted.
  std::vector<std::string> names;
  names.reserve(quota_users_.size());
  for (const QuotaUser& q : quota_users_) names.push_back(q.name);
  std::vector<std::vector<uint64_t>> per_worker;
  for (const auto& w : rt_.workers) {
    std::vector<uint64_t> out(names.size());
    const auto& users = w->stats().users;
    for (size_t i = 0; i < names.size(); ++i)
      if (auto it = users.find(names[i]); it != users.end())
        out[i] = it->second.bytes_up + it->second.bytes_down;
    per_worker.push_back(std::move(out));
  }
  add_worker_counts(names, per_worker);
  if (!fleet_usage()) return save_usage_if_changed();
  if (!store_ || !store_->up()) {
    UP_WARN("usage: the store is down; this node's last counts are not added to it");
    return;
  }
  // Nothing is published any more: a read the link still finishes is dropped.
  store_->on_records = nullptr;
  store_->on_user = nullptr;
  store_->on_proxies = nullptr;
  store_->on_agents = nullptr;
  constexpr uint64_t wait_ms = 3000;
  uint64_t deadline = monotonic_ms() + wait_ms;
  if (fleet_.flushing()) store_->drain(wait_ms);  // the batch in flight first: one at a time
  flush_to_store();
  uint64_t now = monotonic_ms();
  bool done = fleet_.flushing() && now < deadline && store_->drain(deadline - now) &&
              !fleet_.flushing();
  if (done && fleet_.pending().empty())
    UP_INFO("usage: this node's last counts were added to the store");
  else
    UP_WARN("usage: this node's last counts were not all added to the store before it stopped");
}

void Management::flush_to_store() {
  // While the store is down, or a batch is still unanswered, the counts wait in fleet_.
  if (!store_ || !store_->up() || fleet_.flushing() || quota_users_.empty()) return;
  int64_t now = now_unix_s();
  std::vector<FleetUsage::Key> read;
  read.reserve(quota_users_.size());
  for (const QuotaUser& q : quota_users_) read.emplace_back(q.name, period_start(q.period, now));
  timespec wall{};
  clock_gettime(CLOCK_REALTIME, &wall);
  int64_t wall_ms = static_cast<int64_t>(wall.tv_sec) * 1000 + wall.tv_nsec / 1000000;
  std::vector<FleetUsage::Row> batch = fleet_.begin_flush(read, wall_ms);
  std::string e = store_->query(
      kUsageFlushSql, usage_flush_params(current_.config.store.node, batch, fleet_.seq()),
      [this](StoreLink::Answer a) {
        std::vector<FleetUsage::Row> totals;
        if (a.error.empty() && !parse_usage_totals(a.rows, totals))
          a.error = "unexpected answer to the usage flush";
        if (a.error.empty()) {
          fleet_.committed(totals);
        } else {
          // Sent again as it is at the next flush; added once even if this one committed.
          fleet_.failed();
          UP_WARN("usage: this node's usage was not added to the store (%s); kept and sent again",
                  a.error.c_str());
        }
        check_quotas();
      });
  if (!e.empty()) fleet_.failed();
}

void Management::fleet_view() {
  int64_t now = now_unix_s();
  for (const QuotaUser& q : quota_users_) {
    UsageEntry& e = usage_.current(q.name, q.period, now);
    e.used_bytes = fleet_.used(q.name, e.period_start);
  }
}

void Management::add_worker_counts(const std::vector<std::string>& names,
                                   const std::vector<std::vector<uint64_t>>& per_worker) {
  int64_t now = now_unix_s();
  for (size_t w = 0; w < per_worker.size() && w < worker_seen_.size(); ++w) {
    const std::vector<uint64_t>& counts = per_worker[w];
    if (counts.size() != names.size()) continue;  // it did not answer: caught up next time
    StringMap<uint64_t>& seen = worker_seen_[w];
    for (size_t i = 0; i < names.size(); ++i) {
      auto q = quota_index_.find(names[i]);
      if (q == quota_index_.end()) continue;  // their quota went while we asked
      auto [it, fresh] = seen.emplace(names[i], counts[i]);
      if (fresh) continue;  // the baseline of a user given a quota since the last flush
      uint64_t delta = counts[i] > it->second ? counts[i] - it->second : 0;
      it->second = counts[i];
      if (!delta) continue;
      const QuotaUser& u = quota_users_[q->second];
      if (fleet_usage()) {
        fleet_.add(u.name, period_start(u.period, now), delta);
        continue;
      }
      usage_.current(u.name, u.period, now).used_bytes += delta;
      usage_changed_ = true;
    }
  }
}

void Management::check_quotas() {
  int64_t now = now_unix_s();
  for (const QuotaUser& q : quota_users_) check_quota(q, now);
}

void Management::check_quota(const QuotaUser& q, int64_t now) {
  const UsageEntry* old = usage_.find(q.name);
  int64_t old_start = old ? old->period_start : -1;
  UsageEntry& e = usage_.current(q.name, q.period, now);
  if (fleet_usage()) e.used_bytes = fleet_.used(q.name, e.period_start);
  if (e.period_start != old_start) usage_changed_ = true;  // a new period began
  bool over = e.used_bytes >= q.quota_bytes;
  bool was = q.state->over_quota.exchange(over, std::memory_order_relaxed);
  if (over == was) return;
  if (!over) {
    UP_INFO("user %s is within quota again (%llu of %llu bytes this %s)", q.name.c_str(),
            static_cast<unsigned long long>(e.used_bytes),
            static_cast<unsigned long long>(q.quota_bytes), to_string(q.period));
    return;
  }
  UP_INFO("user %s is over quota (%llu of %llu bytes this %s, until %s): closing their tunnels",
          q.name.c_str(), static_cast<unsigned long long>(e.used_bytes),
          static_cast<unsigned long long>(q.quota_bytes), to_string(q.period),
          utc_text(period_end(q.period, e.period_start)).c_str());
  // The flag is set before the workers are asked: a tunnel routed after the kick sees it.
  kick_everywhere(q.name, Result::over_quota, [](size_t) {});
}

void Management::save_usage_if_changed() {
  if (!usage_changed_ || usage_path_.empty()) return;
  std::string err;
  if (!save_usage(usage_path_, usage_, err)) {
    UP_WARN("usage: %s (kept in memory; retried at the next flush)", err.c_str());
    return;
  }
  usage_changed_ = false;
}

std::string Management::cmd_usage(const Args& a) {
  std::string only = str_arg(a, "username");
  const User* named = nullptr;
  if (!only.empty()) {
    for (const User& u : current_.users)
      if (u.username == only) named = &u;
    if (!named) return refuse("no user " + only);
  }
  if (fleet_usage()) fleet_view();
  int64_t now = now_unix_s();
  auto row = [&](Json& w, const std::string& name) {
    w.StartObject();
    put(w, "user", name);
    auto q = quota_index_.find(name);
    if (q == quota_index_.end()) {
      put(w, "used_bytes", uint64_t{0});
      put(w, "quota_bytes", uint64_t{0});
      put_opt(w, "period", std::nullopt);
      put_opt(w, "resets_at", std::nullopt);
    } else {
      const QuotaUser& u = quota_users_[q->second];
      const UsageEntry& e = usage_.current(name, u.period, now);
      put(w, "used_bytes", e.used_bytes);
      put(w, "quota_bytes", u.quota_bytes);
      put(w, "period", std::string(to_string(u.period)));
      put(w, "resets_at", utc_text(period_end(u.period, e.period_start)));
    }
    w.EndObject();
  };
  return answer([&](Json& w) {
    w.Key("usage");
    w.StartArray();
    if (named) {
      row(w, named->username);
    } else {
      for (const QuotaUser& q : quota_users_) row(w, q.name);
    }
    w.EndArray();
  });
}

void Management::cmd_quota_set(const Args& a, const Reply& done) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return done(refuse("quota.set needs \"username\""));
  auto b = a.FindMember("quota_bytes");
  if (b == a.MemberEnd() || !b->value.IsUint64())
    return done(refuse("quota.set needs \"quota_bytes\" (a whole number of bytes; 0 = none)"));
  uint64_t bytes = b->value.GetUint64();
  std::string period_text = str_arg(a, "period");
  QuotaPeriod period = QuotaPeriod::none;
  if (!parse_quota_period(period_text, period))
    return done(refuse("period: \"" + period_text + "\" is not day, week or month"));
  std::string r = edit_user(
      name,
      [&](std::optional<User>& u) -> std::string {
        if (!u) return "no user " + name;
        u->quota_bytes = bytes;
        u->quota_period = bytes ? period : QuotaPeriod::none;
        return "";
      },
      [this, name, done](uint64_t generation, size_t) {
        UP_INFO("quota set %s: generation %llu", name.c_str(),
                static_cast<unsigned long long>(generation));
        done(answer([&](Json& w) {
          put(w, "generation", generation);
          put(w, "user", name);
          auto q = quota_index_.find(name);
          bool has = q != quota_index_.end();
          put(w, "quota_bytes", has ? quota_users_[q->second].quota_bytes : 0);
          put_opt(w, "period", has ? std::optional<std::string>(to_string(quota_users_[q->second].period))
                                   : std::nullopt);
        }));
      },
      done);
  if (!r.empty()) done(r);
}

void Management::cmd_quota_reset(const Args& a, const Reply& done) {
  std::string name = str_arg(a, "username");
  if (name.empty()) return done(refuse("quota.reset needs \"username\""));
  bool known = false;
  for (const User& u : current_.users) known = known || u.username == name;
  if (!known) return done(refuse("no user " + name));
  if (store_) return quota_reset_in_store(name, done);
  usage_.reset(name);
  usage_changed_ = true;
  check_quotas();
  save_usage_if_changed();
  UP_INFO("quota reset %s", name.c_str());
  done(answer([&](Json& w) {
    put(w, "user", name);
    put(w, "used_bytes", uint64_t{0});
  }));
}

// A postgres node: every node's usage rows of the user go in one statement with its NOTIFY; the
// other nodes read the zero at their next flush.
void Management::quota_reset_in_store(const std::string& name, const Reply& done) {
  std::string e = store_->execute(
      "WITH w AS (DELETE FROM usage WHERE username = $1) "
      "SELECT pg_notify('uringproxy_changes', $2)",
      {name, current_.config.store.node + " usage " + name}, [this, name, done](std::string err) {
        if (!err.empty()) return done(refuse("the store did not take the reset: " + err));
        fleet_.reset(name);
        usage_.reset(name);
        check_quotas();
        UP_INFO("quota reset %s (fleet-wide)", name.c_str());
        // Bytes counted here since the last flush are still added (as with the JSON store).
        const UsageEntry* e = usage_.find(name);
        done(answer([&](Json& w) {
          put(w, "user", name);
          put(w, "used_bytes", e ? e->used_bytes : uint64_t{0});
        }));
      });
  if (!e.empty()) done(refuse(e));
}

}  // namespace up
