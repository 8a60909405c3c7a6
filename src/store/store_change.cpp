#include "store/store_change.h"

namespace up {

StoreChange parse_store_change(std::string_view payload) {
  auto last_word = [](std::string_view& s) {
    size_t sp = s.rfind(' ');
    std::string_view w = sp == std::string_view::npos ? s : s.substr(sp + 1);
    s = sp == std::string_view::npos ? std::string_view() : s.substr(0, sp);
    return w;
  };
  std::string_view rest = payload;
  std::string_view key = last_word(rest);
  std::string_view kind = last_word(rest);
  StoreChange c;
  if (kind == "user" && !key.empty()) {
    c.kind = StoreChange::Kind::user;
    c.user = key;
  } else if (key == "upstreams" && payload.size() > key.size()) {
    c.kind = StoreChange::Kind::upstreams;
  } else if (key == "agents" && payload.size() > key.size()) {
    c.kind = StoreChange::Kind::agents;
  } else if (kind == "usage" && !key.empty()) {
    c.kind = StoreChange::Kind::usage;
    c.user = key;
  }
  return c;
}

}  // namespace up
