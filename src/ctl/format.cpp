#include "ctl/format.h"

#include <stdio.h>

#include "ctl/json_get.h"

namespace up::ctl {

std::string human_bytes(uint64_t n) {
  if (n < 1024) return std::to_string(n) + " B";
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(n) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string human_duration(uint64_t s) {
  char buf[48];
  if (s < 60) {
    snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  } else if (s < 3600) {
    snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
             static_cast<unsigned long long>(s % 60));
  } else if (s < 86400) {
    snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
             static_cast<unsigned long long>(s % 3600 / 60));
  } else {
    snprintf(buf, sizeof buf, "%llud%02lluh", static_cast<unsigned long long>(s / 86400),
             static_cast<unsigned long long>(s % 86400 / 3600));
  }
  return buf;
}

std::string human_bps(uint64_t bps) {
  static const char* const units[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s",
                                      "Ebit/s"};
  double v = static_cast<double>(bps);
  int u = 0;
  while (v >= 1000.0 && u < 6) {
    v /= 1000.0;
    ++u;
  }
  char buf[32];
  // Whole numbers without ".0": link speeds are usually round.
  if (v == static_cast<double>(static_cast<uint64_t>(v)))
    snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(v), units[u]);
  else
    snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string host_port(const std::string& host, uint64_t port) {
  if (host.find(':') != std::string::npos && host.front() != '[')
    return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string scalar_text(const rapidjson::Value& v) {
  if (v.IsString()) return std::string(v.GetString(), v.GetStringLength());
  if (v.IsNull()) return "null";
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsUint64()) return std::to_string(v.GetUint64());
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsDouble()) {
    char buf[64];
    snprintf(buf, sizeof buf, "%g", v.GetDouble());
    return buf;
  }
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

}  // namespace up::ctl
