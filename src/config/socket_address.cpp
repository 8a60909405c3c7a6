// "a.b.c.d:port" and "[v6]:port" to a sockaddr, without DNS.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "uringproxy/config.h"

namespace up {

namespace {

bool parse_port(const std::string& s, uint16_t& port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v < 1 || v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

bool parse_socket_address(const std::string& text, SocketAddress& out) {
  if (text.find('\0') != std::string::npos) return false;
  std::string host, port_text;
  bool v6 = false;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return false;
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    v6 = true;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return false;  // bare v6 needs brackets
  }
  uint16_t port = 0;
  if (!parse_port(port_text, port)) return false;
  SocketAddress r;
  if (v6) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    // Zone ids ("fe80::1%eth0") are not supported: an egress proxy listens on routable addresses.
    if (inet_pton(AF_INET6, host.c_str(), &sa.sin6_addr) != 1) return false;
    std::memcpy(&r.addr, &sa, sizeof sa);
    r.len = sizeof sa;
  } else {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return false;
    std::memcpy(&r.addr, &sa, sizeof sa);
    r.len = sizeof sa;
  }
  r.text = text;
  out = std::move(r);
  return true;
}

}  // namespace up
