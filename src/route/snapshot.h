#pragma once
// Everything a worker needs to decide about a new connection, immutable once published.
// Workers read it without locks; connections copy what they keep (a snapshot may be reclaimed
// after the worker's next loop turn).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "route/acl.h"
#include "uringproxy/config.h"

namespace up {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct Snapshot {
  uint64_t generation = 0;
  Config config;
  std::unordered_map<std::string, User, StringHash, std::equal_to<>> users;
  Acl acl;

  const User* find_user(std::string_view name) const {
    auto it = users.find(name);
    return it == users.end() ? nullptr : &it->second;
  }
};

// Builds a snapshot from a validated ConfigSet.
std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, uint64_t generation);

}  // namespace up
