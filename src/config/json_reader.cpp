#include "config/json_reader.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace up::config {

void FileDiagnostics::error(const std::string& field, const std::string& message) {
  diag_.errors.push_back(field.empty() ? file_ + ": " + message
                                       : file_ + ": " + field + ": " + message);
}

void FileDiagnostics::warning(const std::string& field, const std::string& message) {
  diag_.warnings.push_back(field.empty() ? file_ + ": " + message
                                         : file_ + ": " + field + ": " + message);
}

void FileDiagnostics::error_at(size_t line, size_t column, const std::string& message) {
  diag_.errors.push_back(file_ + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " +
                         message);
}

bool parse_json(const std::string& text, FileDiagnostics& fd, rapidjson::Document& doc) {
  constexpr unsigned kFlags = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
                              rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseIterativeFlag;  // no recursion: deep nesting is safe
  doc.Parse<kFlags>(text.data(), text.size());
  if (!doc.HasParseError()) return true;
  size_t offset = std::min(doc.GetErrorOffset(), text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  fd.error_at(line, column,
              std::string("invalid JSON: ") + rapidjson::GetParseError_En(doc.GetParseError()) +
                  " (fix the syntax at this line and column; // and /* */ comments are allowed)");
  return false;
}

const rapidjson::Value* parse_json_list(const std::string& text, FileDiagnostics& fd,
                                        rapidjson::Document& doc, const char* key) {
  if (!parse_json(text, fd, doc)) return nullptr;
  if (!doc.IsObject()) {
    fd.error("", std::string("the top level must be an object {\"") + key + "\": [...]}, not " +
                     json_type_name(doc));
    return nullptr;
  }
  ObjectReader root(fd, doc, "");
  const rapidjson::Value* arr = root.get_array(key, true);
  root.finish();
  return arr;
}

const char* json_type_name(const rapidjson::Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType: return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return "a boolean";
    case rapidjson::kObjectType: return "an object";
    case rapidjson::kArrayType: return "an array";
    case rapidjson::kStringType: return "a string";
    case rapidjson::kNumberType: return "a number";
  }
  return "a value";
}

std::string quote(const std::string& s) {
  constexpr size_t kMax = 80;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static const char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMax) out += "...";
  out += '"';
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b, size_t limit) {
  size_t la = a.size(), lb = b.size();
  if ((la > lb ? la - lb : lb - la) > limit) return limit + 1;
  std::vector<size_t> prev(lb + 1), cur(lb + 1);
  for (size_t j = 0; j <= lb; ++j) prev[j] = j;
  for (size_t i = 1; i <= la; ++i) {
    cur[0] = i;
    size_t row_min = cur[0];
    for (size_t j = 1; j <= lb; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      row_min = std::min(row_min, cur[j]);
    }
    if (row_min > limit) return limit + 1;
    std::swap(prev, cur);
  }
  return std::min(prev[lb], limit + 1);
}

ObjectReader::ObjectReader(FileDiagnostics& fd, const rapidjson::Value& obj, std::string path)
    : fd_(fd), obj_(obj), path_(std::move(path)) {}

std::string ObjectReader::field(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

std::string index_path(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

const rapidjson::Value* ObjectReader::find(const char* key) {
  known_.emplace_back(key);
  const rapidjson::Value* found = nullptr;
  size_t klen = std::strlen(key);
  for (auto it = obj_.MemberBegin(); it != obj_.MemberEnd(); ++it) {
    if (it->name.GetStringLength() != klen || std::memcmp(it->name.GetString(), key, klen) != 0)
      continue;
    if (found == nullptr) {
      found = &it->value;
    } else if (duplicates_reported_.insert(key).second) {
      error(key, "appears more than once in this object; keep one");
    }
  }
  return found;
}

bool ObjectReader::has(const char* key) {
  size_t klen = std::strlen(key);
  for (auto it = obj_.MemberBegin(); it != obj_.MemberEnd(); ++it)
    if (it->name.GetStringLength() == klen && std::memcmp(it->name.GetString(), key, klen) == 0)
      return true;
  return false;
}

bool ObjectReader::get_string(const char* key, std::string& out, bool required,
                              bool allow_empty) {
  const rapidjson::Value* v = find(key);
  if (v == nullptr) {
    if (required) error(key, "is required (a string)");
    return false;
  }
  if (!v->IsString()) {
    error(key, std::string("must be a string, not ") + json_type_name(*v));
    return false;
  }
  std::string s(v->GetString(), v->GetStringLength());
  if (s.empty() && !allow_empty) {
    error(key, "must not be empty");
    return false;
  }
  out = std::move(s);
  return true;
}

bool ObjectReader::get_bool(const char* key, bool& out) {
  const rapidjson::Value* v = find(key);
  if (v == nullptr) return false;
  if (!v->IsBool()) {
    error(key, std::string("must be true or false, not ") + json_type_name(*v));
    return false;
  }
  out = v->GetBool();
  return true;
}

bool ObjectReader::get_uint(const char* key, uint64_t& out, uint64_t min, uint64_t max,
                            bool required) {
  const rapidjson::Value* v = find(key);
  std::string range = std::to_string(min) + ".." + std::to_string(max);
  if (v == nullptr) {
    if (required) error(key, "is required (an integer " + range + ")");
    return false;
  }
  if (!v->IsNumber()) {
    error(key, "must be an integer " + range + ", not " + json_type_name(*v));
    return false;
  }
  if (v->IsInt64() && v->GetInt64() < 0) {
    error(key, std::to_string(v->GetInt64()) + " is out of range (" + range + ")");
    return false;
  }
  if (!v->IsUint64()) {
    // A fraction, or beyond 64 bits.
    error(key, "must be a whole number " + range);
    return false;
  }
  uint64_t n = v->GetUint64();
  if (n < min || n > max) {
    error(key, std::to_string(n) + " is out of range (" + range + ")");
    return false;
  }
  out = n;
  return true;
}

bool ObjectReader::get_path(const char* key, const std::string& dir, std::string& out,
                            bool required) {
  std::string v;
  if (!get_string(key, v, required)) return false;
  if (v.find('\0') != std::string::npos) {
    error(key, "contains a NUL byte; write a plain file path");
    return false;
  }
  out = resolve_path(dir, v);
  return true;
}

bool ObjectReader::get_string_array(const char* key, std::vector<std::string>& out,
                                    std::string (*check)(const std::string&)) {
  const rapidjson::Value* v = get_array(key);
  if (v == nullptr) return false;
  std::vector<std::string> items;
  bool ok = true;
  for (rapidjson::SizeType i = 0; i < v->Size(); ++i) {
    const rapidjson::Value& e = (*v)[i];
    std::string where = index_path(field(key), i);
    if (!e.IsString()) {
      fd_.error(where, std::string("must be a string, not ") + json_type_name(e));
      ok = false;
      continue;
    }
    std::string s(e.GetString(), e.GetStringLength());
    if (check != nullptr) {
      std::string why = check(s);
      if (!why.empty()) {
        fd_.error(where, why);
        ok = false;
        continue;
      }
    }
    items.push_back(std::move(s));
  }
  if (ok) out = std::move(items);
  return ok;
}

const rapidjson::Value* ObjectReader::get_object(const char* key, bool required) {
  const rapidjson::Value* v = find(key);
  if (v == nullptr) {
    if (required) error(key, "is required (an object)");
    return nullptr;
  }
  if (!v->IsObject()) {
    error(key, std::string("must be an object {...}, not ") + json_type_name(*v));
    return nullptr;
  }
  return v;
}

const rapidjson::Value* ObjectReader::get_array(const char* key, bool required) {
  const rapidjson::Value* v = find(key);
  if (v == nullptr) {
    if (required) error(key, "is required (an array [...])");
    return nullptr;
  }
  if (!v->IsArray()) {
    error(key, std::string("must be an array [...], not ") + json_type_name(*v));
    return nullptr;
  }
  return v;
}

void ObjectReader::finish() {
  std::set<std::string> reported;
  for (auto it = obj_.MemberBegin(); it != obj_.MemberEnd(); ++it) {
    std::string key(it->name.GetString(), it->name.GetStringLength());
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    if (!reported.insert(key).second) continue;
    std::string best;
    size_t best_d = 3;
    for (const std::string& k : known_) {
      if (ignored_.count(k)) continue;
      size_t d = edit_distance(key, k, 2);
      if (d < best_d) {
        best_d = d;
        best = k;
      }
    }
    std::string shown = quote(key);
    std::string where = field(key);
    if (key.size() > 80 || key.find_first_of(std::string("\0\n\r\t", 4)) != std::string::npos)
      where = field(shown);
    if (!best.empty()) {
      fd_.error(where, "unknown field (did you mean \"" + best + "\"?)");
    } else {
      std::string list;
      std::set<std::string> seen;
      for (const std::string& k : known_) {
        if (ignored_.count(k) || !seen.insert(k).second) continue;
        if (!list.empty()) list += ", ";
        list += k;
      }
      fd_.error(where, "unknown field; remove it (fields here: " + list + ")");
    }
  }
}

std::string resolve_path(const std::string& dir, const std::string& value) {
  std::filesystem::path p(value);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (std::filesystem::path(dir) / p).lexically_normal().string();
}

std::string absolute_path(const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_absolute()) return p.lexically_normal().string();
  char buf[4096];
  std::string cwd = getcwd(buf, sizeof buf) != nullptr ? buf : "/";
  return (std::filesystem::path(cwd) / p).lexically_normal().string();
}

std::string parent_dir(const std::string& absolute) {
  std::string d = std::filesystem::path(absolute).parent_path().string();
  return d.empty() ? "/" : d;
}

std::string display_path(const std::string& absolute) {
  char buf[4096];
  if (getcwd(buf, sizeof buf) == nullptr) return absolute;
  std::filesystem::path rel = std::filesystem::path(absolute).lexically_relative(buf);
  std::string r = rel.string();
  if (r.empty() || r.rfind("..", 0) == 0) return absolute;
  return r;
}

void move_errors_since(Diagnostics& diag, size_t since, std::vector<std::string>* to) {
  if (to == nullptr || since >= diag.errors.size()) return;
  auto from = diag.errors.begin() + static_cast<std::ptrdiff_t>(since);
  to->insert(to->end(), std::make_move_iterator(from), std::make_move_iterator(diag.errors.end()));
  diag.errors.erase(from, diag.errors.end());
}

}  // namespace up::config
