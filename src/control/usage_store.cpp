#include "control/usage_store.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "config/rapidjson.h"
#include "control/atomic_file.h"
#include "route/quota.h"

namespace up {

UsageEntry& UsageBook::current(const std::string& user, QuotaPeriod period, int64_t now_s) {
  UsageEntry& e = entries_[user];
  int64_t start = period_start(period, now_s);
  if (e.period != period || e.period_start != start) e = {period, start, 0};
  return e;
}

const UsageEntry* UsageBook::find(const std::string& user) const {
  auto it = entries_.find(user);
  return it == entries_.end() ? nullptr : &it->second;
}

std::string UsageBook::to_json() const {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("usage");
  w.StartArray();
  for (const auto& [user, e] : entries_) {
    w.StartObject();
    w.Key("user");
    w.String(user.data(), static_cast<rapidjson::SizeType>(user.size()));
    w.Key("period");
    w.String(to_string(e.period));
    w.Key("period_start");
    w.Int64(e.period_start);
    w.Key("used_bytes");
    w.Uint64(e.used_bytes);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize()) + "\n";
}

bool UsageBook::parse(const std::string& text, UsageBook& out, std::string& error) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError()) {
    error = std::string("not JSON (") + rapidjson::GetParseError_En(doc.GetParseError()) +
            " at offset " + std::to_string(doc.GetErrorOffset()) + ")";
    return false;
  }
  auto arr = doc.IsObject() ? doc.FindMember("usage") : rapidjson::Value::MemberIterator();
  if (!doc.IsObject() || arr == doc.MemberEnd() || !arr->value.IsArray()) {
    error = "the top level must be {\"usage\": [...]}";
    return false;
  }
  UsageBook book;
  rapidjson::SizeType i = 0;
  for (const auto& v : arr->value.GetArray()) {
    std::string where = "usage[" + std::to_string(i++) + "]";
    if (!v.IsObject()) {
      error = where + ": must be an object";
      return false;
    }
    auto user = v.FindMember("user");
    auto period = v.FindMember("period");
    auto start = v.FindMember("period_start");
    auto used = v.FindMember("used_bytes");
    UsageEntry e;
    if (user == v.MemberEnd() || !user->value.IsString() || user->value.GetStringLength() == 0 ||
        period == v.MemberEnd() || !period->value.IsString() ||
        !parse_quota_period(period->value.GetString(), e.period) || start == v.MemberEnd() ||
        !start->value.IsInt64() || used == v.MemberEnd() || !used->value.IsUint64()) {
      error = where + ": needs \"user\", \"period\" (day, week or month), \"period_start\" and "
                      "\"used_bytes\"";
      return false;
    }
    e.period_start = start->value.GetInt64();
    e.used_bytes = used->value.GetUint64();
    book.entries_[user->value.GetString()] = e;
  }
  out = std::move(book);
  return true;
}

std::string usage_file_for(const std::string& users_file) {
  size_t slash = users_file.find_last_of('/');
  return (slash == std::string::npos ? std::string() : users_file.substr(0, slash + 1)) +
         "usage.json";
}

bool load_usage(const std::string& path, UsageBook& out, std::string& error) {
  std::string text;
  uint64_t cap = kDefaultMaxConfigFileBytes;
  if (access(path.c_str(), F_OK) != 0 && errno == ENOENT) {
    out = UsageBook{};
    return true;
  }
  if (!read_config_file(path, cap, text, error)) return false;
  if (!UsageBook::parse(text, out, error)) {
    error = path + ": " + error + " (fix it, or delete it to count every quota from zero)";
    return false;
  }
  return true;
}

bool save_usage(const std::string& path, const UsageBook& book, std::string& error) {
  return write_file_atomic(path, book.to_json(), 0600, error);
}

}  // namespace up
