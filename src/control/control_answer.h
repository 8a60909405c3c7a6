#pragma once
// Building control answers (docs/control-protocol.md): {"ok":true, ...} or
// {"ok":false,"error":"...","errors":[...]}, and reading request arguments.
#include <optional>
#include <string>
#include <vector>

#include "config/rapidjson.h"

namespace up::control_answer {

using Json = rapidjson::Writer<rapidjson::StringBuffer>;

inline std::string refuse(const std::string& why, const std::vector<std::string>& errors = {}) {
  rapidjson::StringBuffer sb;
  Json w(sb);
  w.StartObject();
  w.Key("ok");
  w.Bool(false);
  w.Key("error");
  w.String(why.c_str());
  if (!errors.empty()) {
    w.Key("errors");
    w.StartArray();
    for (const auto& e : errors) w.String(e.c_str());
    w.EndArray();
  }
  w.EndObject();
  return sb.GetString();
}

// Builds {"ok":true, ...} with the fields `body` writes.
template <typename F>
std::string answer(F&& body) {
  rapidjson::StringBuffer sb;
  Json w(sb);
  w.StartObject();
  w.Key("ok");
  w.Bool(true);
  body(w);
  w.EndObject();
  return sb.GetString();
}

inline void put(Json& w, const char* k, const std::string& v) {
  w.Key(k);
  w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
}
inline void put(Json& w, const char* k, uint64_t v) {
  w.Key(k);
  w.Uint64(v);
}
inline void put_opt(Json& w, const char* k, const std::optional<std::string>& v) {
  w.Key(k);
  if (v)
    w.String(v->c_str());
  else
    w.Null();
}

inline std::string str_arg(const rapidjson::Value& a, const char* k) {
  auto it = a.FindMember(k);
  return it != a.MemberEnd() && it->value.IsString() ? it->value.GetString() : std::string();
}
inline bool has_str(const rapidjson::Value& a, const char* k) {
  auto it = a.FindMember(k);
  return it != a.MemberEnd() && it->value.IsString();
}

}  // namespace up::control_answer
