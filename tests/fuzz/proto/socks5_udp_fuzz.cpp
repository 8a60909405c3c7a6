// Fuzzes the SOCKS5 UDP request header (src/proto/socks5.cpp, RFC 1928 section 7): every
// datagram a client or an upstream relay can send, with invariants and encode/parse round
// trips.
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <span>

#include "uringproxy/socks5.h"

#include "fuzz_assert.h"

using namespace up::socks5;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  UdpHeader h;
  UdpParse p = parse_udp_header(in, h);
  if (p != UdpParse::ok) {
    // A datagram that is not one is never half-accepted: the output is untouched.
    FUZZ_ASSERT(h.header_len == 0 && h.target.host.empty());
    return 0;
  }
  // The shortest header names a one-letter host (3 + 1 + 1 + 1 + 2 bytes).
  FUZZ_ASSERT(h.header_len >= 8 && h.header_len <= size && h.header_len <= max_udp_header);
  FUZZ_ASSERT(h.frag == data[2]);
  FUZZ_ASSERT(!h.target.host.empty() && h.target.host.size() <= 255);
  // Whatever is appended to a datagram is payload: the header parses the same.
  uint8_t grown[max_udp_header + 8];
  std::memcpy(grown, data, h.header_len);
  std::memset(grown + h.header_len, 0xa5, 8);
  UdpHeader g;
  FUZZ_ASSERT(parse_udp_header({grown, h.header_len + 8}, g) == UdpParse::ok &&
              g.header_len == h.header_len && g.target.host == h.target.host &&
              g.target.port == h.target.port);
  // And one byte less is not a header.
  FUZZ_ASSERT(parse_udp_header(in.first(h.header_len - 1), g) == UdpParse::truncated);

  // Re-encoding gives a header (FRAG 0) that parses back to the same target.
  uint8_t out[max_udp_header];
  size_t n = encode_udp_header(h.target, out);
  FUZZ_ASSERT(n > 0 && n <= sizeof out && out[2] == 0);
  UdpHeader again;
  FUZZ_ASSERT(parse_udp_header({out, n}, again) == UdpParse::ok && again.header_len == n);
  FUZZ_ASSERT(again.target.kind == h.target.kind && again.target.host == h.target.host &&
              again.target.port == h.target.port &&
              std::memcmp(again.target.ip, h.target.ip, 16) == 0);

  // A literal target as a source address (what the relay writes towards its client).
  if (h.target.is_literal()) {
    sockaddr_storage ss{};
    socklen_t len = h.target.to_sockaddr(ss);
    FUZZ_ASSERT(len > 0);
    if (ss.ss_family == AF_INET)
      reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(h.target.port);
    else
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(h.target.port);
    uint8_t hdr[22];
    size_t m = encode_udp_header(reinterpret_cast<sockaddr*>(&ss), hdr);
    FUZZ_ASSERT(parse_udp_header({hdr, m}, again) == UdpParse::ok && again.header_len == m);
    FUZZ_ASSERT(again.target.port == h.target.port &&
                std::memcmp(again.target.ip, h.target.ip, 16) == 0);
  }
  return 0;
}
