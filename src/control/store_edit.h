#pragma once
// What an edit on a postgres node writes: the records of a list (upstreams, agents) it added or
// changed, and the ids it removed, in one statement with its NOTIFY. Once committed, the same
// difference is applied to the list in force, which another node may have changed meanwhile.
#include <algorithm>
#include <string>
#include <vector>

#include "config/rapidjson.h"

namespace up {

template <typename T>
struct ListEdit {
  std::vector<T> changed;             // records added or changed
  std::vector<std::string> gone_ids;  // ids removed
};

// What turns `before` into `after`, records keyed by their `id`; `same` compares two records.
template <typename T, typename Same>
ListEdit<T> list_edit(const std::vector<T>& before, const std::vector<T>& after, Same same) {
  auto find = [](const std::vector<T>& in, const std::string& id) {
    return std::find_if(in.begin(), in.end(), [&](const T& x) { return x.id == id; });
  };
  ListEdit<T> e;
  for (const T& a : after)
    if (auto old = find(before, a.id); old == before.end() || !same(*old, a))
      e.changed.push_back(a);
  for (const T& b : before)
    if (find(after, b.id) == after.end()) e.gone_ids.push_back(b.id);
  return e;
}

// `list` with the edit applied: removed ids dropped, changed records replaced or appended.
template <typename T>
std::vector<T> applied(std::vector<T> list, const ListEdit<T>& e) {
  for (const std::string& id : e.gone_ids)
    list.erase(std::remove_if(list.begin(), list.end(), [&](const T& x) { return x.id == id; }),
               list.end());
  for (const T& c : e.changed) {
    auto at = std::find_if(list.begin(), list.end(), [&](const T& x) { return x.id == c.id; });
    if (at != list.end()) *at = c;
    else list.push_back(c);
  }
  return list;
}

// The removed ids as a JSON array ($1 of store_edit_sql).
inline std::string json_ids(const std::vector<std::string>& ids) {
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w(b);
  w.StartArray();
  for (const std::string& id : ids)
    w.String(id.c_str(), static_cast<rapidjson::SizeType>(id.size()));
  w.EndArray();
  return b.GetString();
}

// One statement: delete the ids in $1 (a JSON array), upsert the records of $2's `array_key`
// (the list's file format), NOTIFY with $3.
inline std::string store_edit_sql(const std::string& table, const std::string& array_key) {
  return "WITH gone AS (DELETE FROM " + table + " WHERE id IN "
         "  (SELECT jsonb_array_elements_text($1::jsonb))),"
         " put AS (INSERT INTO " + table + " (id, record) SELECT r->>'id', r FROM "
         "  jsonb_array_elements(($2::jsonb)->'" + array_key + "') r ON CONFLICT (id) DO UPDATE "
         "  SET record = excluded.record, updated_at = now()) "
         "SELECT pg_notify('uringproxy_changes', $3)";
}

}  // namespace up
