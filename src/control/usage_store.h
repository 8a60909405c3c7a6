#pragma once
// Bytes each user with a quota has moved in their current period, and the file that keeps them
// across restarts (usage.json beside users_file, written atomically; docs/configuration.md).
// The management thread owns it: workers only count, it adds their counts here.
#include <cstdint>
#include <map>
#include <string>

#include "uringproxy/config.h"

namespace up {

struct UsageEntry {
  QuotaPeriod period = QuotaPeriod::none;
  int64_t period_start = 0;  // Unix seconds, a UTC boundary (route/quota.h)
  uint64_t used_bytes = 0;
};

class UsageBook {
 public:
  // The user's entry for the period of `period` that contains `now_s`: an entry from an
  // earlier period, or kept for another kind of period, starts again from zero.
  UsageEntry& current(const std::string& user, QuotaPeriod period, int64_t now_s);
  // Zero for a user with no entry; does not roll anything over.
  const UsageEntry* find(const std::string& user) const;
  void reset(const std::string& user) { entries_.erase(user); }
  // Drops every user for whom keep(name) is false (deleted, or their quota removed).
  template <typename Keep>
  void prune(Keep&& keep) {
    for (auto it = entries_.begin(); it != entries_.end();)
      it = keep(it->first) ? std::next(it) : entries_.erase(it);
  }
  const std::map<std::string, UsageEntry>& entries() const { return entries_; }

  std::string to_json() const;
  // False with `error` (naming the entry) when `text` is not a usage file; `out` is untouched.
  static bool parse(const std::string& text, UsageBook& out, std::string& error);

 private:
  std::map<std::string, UsageEntry> entries_;
};

// The usage file of a JSON store: "usage.json" in the directory of users_file.
std::string usage_file_for(const std::string& users_file);

// Reads `path` into `out` (a missing file is an empty book). False with `error` naming the
// file and the fix when it cannot be read or parsed.
bool load_usage(const std::string& path, UsageBook& out, std::string& error);
bool save_usage(const std::string& path, const UsageBook& book, std::string& error);

}  // namespace up
