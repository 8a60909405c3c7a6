#include "route/snapshot.h"

namespace up {

std::unique_ptr<Snapshot> build_snapshot(const ConfigSet& set, uint64_t generation) {
  auto s = std::make_unique<Snapshot>();
  s->generation = generation;
  s->config = set.config;
  s->users.reserve(set.users.size());
  for (const User& u : set.users) s->users.emplace(u.username, u);
  s->acl = Acl(set.config.acl.deny_private, set.config.acl.allow, set.config.acl.deny);
  return s;
}

}  // namespace up
