#include "common.h"

#include <arpa/inet.h>
#include <sys/resource.h>

#include <cerrno>
#include <cmath>
#include <cstdio>

namespace uload {

void Result::num(const std::string& k, double v, int prec) {
  char b[64];
  if (!std::isfinite(v)) snprintf(b, sizeof b, "null");
  else snprintf(b, sizeof b, "%.*f", prec, v);
  fields.push_back({k, b, false});
}
void Result::integer(const std::string& k, long long v) {
  fields.push_back({k, std::to_string(v), false});
}
void Result::str(const std::string& k, const std::string& v) { fields.push_back({k, v, true}); }

static std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (uint8_t(c) < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return o;
}

std::string Result::json() const {
  std::string o = "{";
  for (size_t i = 0; i < fields.size(); i++) {
    if (i) o += ", ";
    o += '"';
    o += json_escape(fields[i].key);
    o += "\": ";
    if (fields[i].is_string) {
      o += '"';
      o += json_escape(fields[i].value);
      o += '"';
    } else {
      o += fields[i].value;
    }
  }
  return o + "}";
}

bool parse_hostport(const std::string& s, sockaddr_storage& out, socklen_t& len) {
  std::string host, port;
  if (!s.empty() && s[0] == '[') {
    auto e = s.find(']');
    if (e == std::string::npos || e + 1 >= s.size() || s[e + 1] != ':') return false;
    host = s.substr(1, e - 1);
    port = s.substr(e + 2);
  } else {
    auto c = s.rfind(':');
    if (c == std::string::npos) return false;
    host = s.substr(0, c);
    port = s.substr(c + 1);
  }
  char* end = nullptr;
  long p = strtol(port.c_str(), &end, 10);
  if (port.empty() || *end || p <= 0 || p > 65535) return false;
  out = {};
  auto* a4 = reinterpret_cast<sockaddr_in*>(&out);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(uint16_t(p));
    len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(uint16_t(p));
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::string format_addr(const sockaddr_storage& a) {
  char b[INET6_ADDRSTRLEN];
  if (a.ss_family == AF_INET) {
    auto* a4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &a4->sin_addr, b, sizeof b);
    return std::string(b) + ":" + std::to_string(ntohs(a4->sin_port));
  }
  auto* a6 = reinterpret_cast<const sockaddr_in6*>(&a);
  inet_ntop(AF_INET6, &a6->sin6_addr, b, sizeof b);
  std::string out = "[";
  out += b;
  out += "]:";
  out += std::to_string(ntohs(a6->sin6_port));
  return out;
}

void Errors::count_errno(int e) {
  switch (e) {
    case ECONNREFUSED: refused++; break;
    case ECONNRESET: case EPIPE: case ECONNABORTED: reset++; break;
    case ETIMEDOUT: case EAGAIN: timeout++; break;
    case EPROTO: tls++; break;  // Tunnel maps TLS failures to EPROTO
    default: other++; break;
  }
}

void Errors::report(Result& r) const {
  r.integer("errors", (long long)total());
  r.integer("err_refused", (long long)refused);
  r.integer("err_reset", (long long)reset);
  r.integer("err_timeout", (long long)timeout);
  r.integer("err_proxy_reply", (long long)proxy_reply);
  r.integer("err_other", (long long)other);
  if (tls) r.integer("err_tls", (long long)tls);
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace uload
