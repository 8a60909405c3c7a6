#include "config/host_port.h"

#include <arpa/inet.h>

namespace up::config {

bool is_host_name(const std::string& host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  char prev = '.';
  for (char c : host) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if (alnum || c == '_' || c == '-') {
      if (c == '-' && label == 0) return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  if (label == 0 || prev == '-') return false;
  // A name whose last label is all digits would be an IPv4 address: only a valid one passes.
  std::string last = host.substr(host.size() - label);
  if (last.find_first_not_of("0123456789") == std::string::npos) {
    in_addr a4;
    return inet_pton(AF_INET, host.c_str(), &a4) == 1;
  }
  return true;
}

bool is_host_port(const std::string& text) {
  SocketAddress sa;
  if (parse_socket_address(text, sa)) return true;
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = text.substr(0, colon);
  // Reuse the port rules of parse_socket_address with a placeholder address.
  return is_host_name(host) && parse_socket_address("0.0.0.0" + text.substr(colon), sa);
}

bool parse_dns_server(const std::string& text, SocketAddress& out) {
  if (text.find('\0') != std::string::npos) return false;
  if (parse_socket_address(text, out)) return true;
  in6_addr a6;
  in_addr a4;
  SocketAddress sa;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    if (!parse_socket_address(text + ":53", sa)) return false;
  } else if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    if (!parse_socket_address("[" + text + "]:53", sa)) return false;
  } else if (text.size() > 2 && text.front() == '[' && text.back() == ']') {
    if (!parse_socket_address(text + ":53", sa)) return false;
  } else {
    return false;
  }
  sa.text = text;
  out = std::move(sa);
  return true;
}

}  // namespace up::config
