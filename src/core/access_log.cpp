#include "core/access_log.h"

#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

namespace up {

bool AccessLog::open(const std::string& where, std::string& err) {
  where_ = where;
  if (where == "off") {
    fd_ = -1;
    return true;
  }
  if (where == "stderr") {
    fd_ = 2;
    return true;
  }
  fd_ = ::open(where.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    err = "access_log: cannot open " + where + ": " + strerror(errno);
    return false;
  }
  return true;
}

bool AccessLog::reopen(std::string& err) {
  if (fd_ <= 2) return true;
  int fd = ::open(where_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    err = "access_log: cannot reopen " + where_ + ": " + strerror(errno);
    return false;
  }
  dup2(fd, fd_);  // writers keep using fd_; it now points at the new file
  close(fd);
  return true;
}

void AccessLog::append_escaped(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      // Non-ASCII is escaped byte-wise: the log stays valid JSON whatever a client sent.
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
}

void AccessLog::write(const AccessRecord& r) const {
  if (fd_ < 0) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char stamp[64];
  snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900,
           t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
  std::string line;
  line.reserve(256);
  line += "{\"ts\":\"";
  line += stamp;
  auto field = [&](const char* key, std::string_view v) {
    line += "\",\"";
    line += key;
    line += "\":\"";
    append_escaped(line, v);
  };
  line += "\",\"user\":";
  if (r.user.empty()) {
    line += "null";
  } else {
    line += '"';
    append_escaped(line, r.user);
    line += '"';
  }
  line += ",\"group\":";
  if (r.group.empty()) {
    line += "null";
  } else {
    line += '"';
    append_escaped(line, r.group);
    line += '"';
  }
  line += ",\"client\":\"";
  append_escaped(line, r.client);
  field("target", r.target);
  field("route", r.route);
  line += "\",\"bytes_up\":" + std::to_string(r.bytes_up);
  line += ",\"bytes_down\":" + std::to_string(r.bytes_down);
  line += ",\"duration_ms\":" + std::to_string(r.duration_ms);
  line += ",\"result\":\"";
  append_escaped(line, r.result);
  line += "\"}\n";
  ssize_t n = ::write(fd_, line.data(), line.size());
  (void)n;
}

}  // namespace up
