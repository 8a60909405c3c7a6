// The written names of config enums, as the files spell them, and of records in messages.
#include "config/json_reader.h"
#include "uringproxy/config.h"

namespace up {

const char* to_string(Protocol p) {
  switch (p) {
    case Protocol::socks5: return "socks5";
    case Protocol::http: return "http";
    case Protocol::vless: return "vless";
    case Protocol::agent: return "agent";
  }
  return "unknown";
}

const char* to_string(UpstreamType t) {
  switch (t) {
    case UpstreamType::socks5: return "socks5";
    case UpstreamType::socks5s: return "socks5s";
    case UpstreamType::http: return "http";
    case UpstreamType::https: return "https";
    case UpstreamType::agent: return "agent";
  }
  return "unknown";
}

const char* to_string(QuotaPeriod p) {
  switch (p) {
    case QuotaPeriod::none: return "";
    case QuotaPeriod::day: return "day";
    case QuotaPeriod::week: return "week";
    case QuotaPeriod::month: return "month";
  }
  return "";
}

bool parse_quota_period(const std::string& text, QuotaPeriod& out) {
  for (QuotaPeriod p : {QuotaPeriod::day, QuotaPeriod::week, QuotaPeriod::month})
    if (text == to_string(p)) {
      out = p;
      return true;
    }
  return false;
}

std::string user_where(const std::string& username, size_t index) {
  return "user " + config::quote(username) + " (" + config::index_path("users", index) + ")";
}

std::string upstream_where(const std::string& id, size_t index) {
  return "upstream " + config::quote(id) + " (" + config::index_path("proxies", index) + ")";
}

}  // namespace up
