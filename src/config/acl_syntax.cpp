#include "config/acl_syntax.h"

#include <arpa/inet.h>

#include <cstring>

#include "config/host_port.h"
#include "config/json_reader.h"

namespace up::config {

namespace {

const char* kForms = " (use a CIDR like \"10.0.0.0/8\", a host like \"example.com\", or \"*.example.com\")";

// Clears the bits past the prefix; says whether any were set.
bool clear_host_bits(unsigned char* bytes, size_t len, unsigned prefix) {
  bool had = false;
  for (size_t i = 0; i < len; ++i) {
    unsigned keep = prefix >= (i + 1) * 8 ? 8 : (prefix > i * 8 ? prefix - i * 8 : 0);
    unsigned char mask = keep == 0 ? 0 : static_cast<unsigned char>(0xff << (8 - keep));
    if (bytes[i] & ~mask) had = true;
    bytes[i] &= mask;
  }
  return had;
}

std::string check_cidr(const std::string& entry, size_t slash) {
  std::string addr = entry.substr(0, slash);
  std::string bits = entry.substr(slash + 1);
  unsigned char bytes[16];
  size_t len;
  int family;
  if (inet_pton(AF_INET, addr.c_str(), bytes) == 1) {
    len = 4;
    family = AF_INET;
  } else if (inet_pton(AF_INET6, addr.c_str(), bytes) == 1) {
    len = 16;
    family = AF_INET6;
  } else {
    return quote(entry) + " is not a CIDR: " + quote(addr) + " is not an IP address" + kForms;
  }
  unsigned max = static_cast<unsigned>(len * 8);
  if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos)
    return quote(entry) + " is not a CIDR: the prefix length must be a number 0.." +
           std::to_string(max);
  unsigned prefix = static_cast<unsigned>(std::stoul(bits));
  if (prefix > max)
    return quote(entry) + ": prefix length " + bits + " is out of range (0.." +
           std::to_string(max) + ")";
  if (clear_host_bits(bytes, len, prefix)) {
    char text[INET6_ADDRSTRLEN];
    inet_ntop(family, bytes, text, sizeof text);
    return quote(entry) + " has bits set past the prefix (did you mean \"" + text + "/" + bits +
           "\"?)";
  }
  return "";
}

}  // namespace

std::string check_acl_entry(const std::string& entry) {
  if (entry.empty()) return std::string("must not be empty") + kForms;
  if (entry.find('\0') != std::string::npos) return std::string("contains a NUL byte") + kForms;
  size_t slash = entry.find('/');
  if (slash != std::string::npos) return check_cidr(entry, slash);
  unsigned char bytes[16];
  if (inet_pton(AF_INET, entry.c_str(), bytes) == 1 ||
      inet_pton(AF_INET6, entry.c_str(), bytes) == 1)
    return "";
  if (entry.rfind("*.", 0) == 0) {
    if (is_host_name(entry.substr(2))) return "";
    return quote(entry) + ": " + quote(entry.substr(2)) + " is not a host name suffix" + kForms;
  }
  if (entry.find('*') != std::string::npos)
    return quote(entry) + ": a wildcard is only allowed as a leading \"*.\"" + kForms;
  if (is_host_name(entry)) return "";
  return quote(entry) + " is not a CIDR, a host name or \"*.suffix\"" + kForms;
}

}  // namespace up::config
