#pragma once
// Building one control request: {"cmd": ..., fields...} as a single JSON line.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/rapidjson.h"

namespace up::ctl {

class Request {
 public:
  explicit Request(const std::string& cmd);
  ~Request();
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  const std::string& cmd() const { return cmd_; }
  Request& str(const char* key, const std::string& value);
  Request& str_or_null(const char* key, const std::optional<std::string>& value);
  Request& strings(const char* key, const std::vector<std::string>& values);
  Request& uint(const char* key, uint64_t value);
  Request& boolean(const char* key, bool value);
  // The finished line (no newline). The buffer is wiped on destruction: it may hold a password.
  const std::string& line();

 private:
  std::string cmd_;
  rapidjson::StringBuffer buf_;
  rapidjson::Writer<rapidjson::StringBuffer> w_;
  std::string line_;
  bool done_ = false;
};

}  // namespace up::ctl
