// Fuzzes src/proto/target.cpp: parse_authority and set_host, with print/parse round trips.
#include <arpa/inet.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "uringproxy/target.h"

#include "fuzz_assert.h"


namespace {

void check_target(const up::Target& t) {
  FUZZ_ASSERT(!t.host.empty() && t.host.size() <= 253);
  if (t.kind == up::Target::Kind::domain) {
    for (char c : t.host) {
      FUZZ_ASSERT((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.');
    }
    for (uint8_t b : t.ip) FUZZ_ASSERT(b == 0);
  } else {
    uint8_t ip[16] = {};
    int af = t.kind == up::Target::Kind::ipv4 ? AF_INET : AF_INET6;
    FUZZ_ASSERT(t.host.find('\0') == std::string::npos);  // the whole text is the address
    FUZZ_ASSERT(inet_pton(af, t.host.c_str(), ip) == 1);
    FUZZ_ASSERT(std::memcmp(ip, t.ip, 16) == 0);
    char text[INET6_ADDRSTRLEN];  // and it prints as inet_ntop prints it
    FUZZ_ASSERT(inet_ntop(af, t.ip, text, sizeof text) && t.host == text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint16_t default_port = static_cast<uint16_t>(data[0] << 8 | data[1]);
  std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);

  up::Target t;
  if (up::parse_authority(text, default_port, t)) {
    check_target(t);
    FUZZ_ASSERT(t.port != 0);
    if (t.kind == up::Target::Kind::domain) FUZZ_ASSERT(text.substr(0, t.host.size()) == t.host);
    up::Target again;
    FUZZ_ASSERT(up::parse_authority(t.to_string(), 0, again));
    FUZZ_ASSERT(again.to_string() == t.to_string() && again.kind == t.kind &&
                std::memcmp(again.ip, t.ip, 16) == 0 && again.port == t.port);
  }

  up::Target h;
  if (up::set_host(text, h)) {
    check_target(h);
    if (h.kind == up::Target::Kind::domain) FUZZ_ASSERT(h.host == text);
    up::Target again;
    FUZZ_ASSERT(up::set_host(h.host, again) && again.host == h.host && again.kind == h.kind);
  }
  return 0;
}
