// control/store_edit.h: the difference a list edit writes to the store, and applying it to a list
// another node may have changed meanwhile.
#include "control/store_edit.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

struct Rec {
  std::string id;
  int v = 0;
  bool operator==(const Rec&) const = default;
};
bool same(const Rec& a, const Rec& b) { return a == b; }

}  // namespace

TEST_CASE("list_edit: added and changed records, removed ids; unchanged ones left out") {
  std::vector<Rec> before{{"a", 1}, {"b", 2}, {"c", 3}};
  std::vector<Rec> after{{"a", 1}, {"c", 30}, {"d", 4}};
  auto e = up::list_edit(before, after, same);
  CHECK(e.changed == std::vector<Rec>{{"c", 30}, {"d", 4}});
  CHECK(e.gone_ids == std::vector<std::string>{"b"});
  auto none = up::list_edit(before, before, same);
  CHECK(none.changed.empty());
  CHECK(none.gone_ids.empty());
}

TEST_CASE("applied: the edit lands on a list that changed meanwhile, keeping the rest") {
  std::vector<Rec> before{{"a", 1}, {"b", 2}, {"c", 3}};
  auto e = up::list_edit(before, {{"a", 10}, {"c", 3}, {"d", 4}}, same);
  // Another node added "x" and removed "c" while this edit was in flight.
  std::vector<Rec> now{{"a", 1}, {"b", 2}, {"x", 9}};
  CHECK(up::applied(now, e) == std::vector<Rec>{{"a", 10}, {"x", 9}, {"d", 4}});
  // Removing an id that is already gone changes nothing.
  CHECK(up::applied(std::vector<Rec>{{"x", 9}}, up::ListEdit<Rec>{{}, {"b"}}) ==
        std::vector<Rec>{{"x", 9}});
}

TEST_CASE("json_ids and store_edit_sql") {
  CHECK(up::json_ids({}) == "[]");
  CHECK(up::json_ids({"a", "q\"uote"}) == "[\"a\",\"q\\\"uote\"]");
  std::string sql = up::store_edit_sql("agents", "agents");
  CHECK(sql.find("DELETE FROM agents WHERE id IN") != std::string::npos);
  CHECK(sql.find("INSERT INTO agents (id, record)") != std::string::npos);
  CHECK(sql.find("($2::jsonb)->'agents'") != std::string::npos);
  CHECK(sql.find("pg_notify('uringproxy_changes', $3)") != std::string::npos);
}
