#pragma once
// Tolerant field access on the daemon's answers: a missing or mistyped field reads as a default,
// so an older or newer daemon still renders.
#include <cstdint>
#include <string>

#include "config/rapidjson.h"

namespace up::ctl {

inline const rapidjson::Value* member(const rapidjson::Value& obj, const char* key) {
  if (!obj.IsObject()) return nullptr;
  auto it = obj.FindMember(key);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

inline std::string get_str(const rapidjson::Value& obj, const char* key,
                           const std::string& def = "") {
  const rapidjson::Value* v = member(obj, key);
  return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : def;
}

inline bool is_null_or_absent(const rapidjson::Value& obj, const char* key) {
  const rapidjson::Value* v = member(obj, key);
  return !v || v->IsNull();
}

inline bool get_bool(const rapidjson::Value& obj, const char* key, bool def = false) {
  const rapidjson::Value* v = member(obj, key);
  return v && v->IsBool() ? v->GetBool() : def;
}

inline bool has_number(const rapidjson::Value& obj, const char* key) {
  const rapidjson::Value* v = member(obj, key);
  return v && v->IsNumber();
}

inline uint64_t get_u64(const rapidjson::Value& obj, const char* key, uint64_t def = 0) {
  const rapidjson::Value* v = member(obj, key);
  if (!v) return def;
  if (v->IsUint64()) return v->GetUint64();
  if (v->IsDouble() && v->GetDouble() >= 0) return static_cast<uint64_t>(v->GetDouble());
  return def;
}

// Any JSON value as plain text for a table cell or a "key: value" line.
std::string scalar_text(const rapidjson::Value& v);

}  // namespace up::ctl
