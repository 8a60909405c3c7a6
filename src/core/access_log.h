#pragma once
// One JSON object per closed connection (DESIGN 2.7). Lines are written with one write(2) each;
// reopen() swaps the file under the writers with dup2, for logrotate on SIGHUP.
#include <cstdint>
#include <string>
#include <string_view>

namespace up {

struct AccessRecord {
  std::string_view user;
  std::string_view group;
  std::string_view client;
  std::string_view target;
  std::string_view route;
  uint64_t bytes_up;
  uint64_t bytes_down;
  uint64_t duration_ms;
  std::string_view result;
};

class AccessLog {
 public:
  // "stderr", "off" or a file path (opened for append).
  bool open(const std::string& where, std::string& err);
  bool reopen(std::string& err);
  bool enabled() const { return fd_ >= 0; }
  void write(const AccessRecord& r) const;

  // Appends s to out as a JSON string body (quotes not included).
  static void append_escaped(std::string& out, std::string_view s);

 private:
  std::string where_;
  int fd_ = -1;
};

}  // namespace up
