#include "ctl/request.h"

#include <string.h>

namespace up::ctl {

Request::Request(const std::string& cmd) : cmd_(cmd), w_(buf_) {
  w_.StartObject();
  w_.Key("cmd");
  w_.String(cmd.data(), static_cast<rapidjson::SizeType>(cmd.size()));
}

Request::~Request() {
  if (buf_.GetSize()) explicit_bzero(const_cast<char*>(buf_.GetString()), buf_.GetSize());
  if (!line_.empty()) explicit_bzero(line_.data(), line_.size());
}

Request& Request::str(const char* key, const std::string& value) {
  w_.Key(key);
  w_.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  return *this;
}

Request& Request::str_or_null(const char* key, const std::optional<std::string>& value) {
  if (value) return str(key, *value);
  w_.Key(key);
  w_.Null();
  return *this;
}

Request& Request::strings(const char* key, const std::vector<std::string>& values) {
  w_.Key(key);
  w_.StartArray();
  for (const auto& v : values) w_.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  w_.EndArray();
  return *this;
}

Request& Request::uint(const char* key, uint64_t value) {
  w_.Key(key);
  w_.Uint64(value);
  return *this;
}

Request& Request::boolean(const char* key, bool value) {
  w_.Key(key);
  w_.Bool(value);
  return *this;
}

const std::string& Request::line() {
  if (!done_) {
    w_.EndObject();
    line_.assign(buf_.GetString(), buf_.GetSize());
    done_ = true;
  }
  return line_;
}

}  // namespace up::ctl
