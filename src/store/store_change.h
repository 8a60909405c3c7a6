#pragma once
// What a NOTIFY on uringproxy_changes names (pg_notify's second argument): "NODE user NAME",
// "NODE upstreams", "NODE agents", "NODE usage NAME"; anything else (`store import` sends
// "import", a NOTIFY sent by hand) calls for a full read. Pure: the link (pg_link.cpp) turns it
// into a read.
#include <string>
#include <string_view>

namespace up {

struct StoreChange {
  enum class Kind : unsigned char { all, user, upstreams, agents, usage };
  Kind kind = Kind::all;
  std::string user;  // user and usage: whose
};

// The node's name comes first and may hold anything, spaces included; the kind and the key
// come last (a username has no spaces).
StoreChange parse_store_change(std::string_view payload);

}  // namespace up
