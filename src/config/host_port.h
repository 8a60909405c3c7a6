#pragma once
// Small address forms in the config that are not listen addresses.
#include <string>

#include "uringproxy/config.h"

namespace up::config {

// "host:port" or "[v6]:port" with a non-empty host (a name or a literal) and port 1..65535.
bool is_host_port(const std::string& text);

// A DNS server: "ip", "ip:port", "[v6]", "[v6]:port" or a bare v6 literal; port 53 when absent.
bool parse_dns_server(const std::string& text, SocketAddress& out);

// A host name as DNS allows it (letters, digits, '-', '_', dot-separated labels of 1..63, at
// most 253 bytes), or an IP literal.
bool is_host_name(const std::string& host);

}  // namespace up::config
