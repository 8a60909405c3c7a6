#pragma once
// VLESS version 0, as v2ray and Xray clients send it: pure parsers and encoders.
// Request header:  VER(0) ID(16) ADDONS_LEN(1) ADDONS CMD(1) [PORT(2, big-endian) ATYP(1) ADDR]
//   ATYP 1 = IPv4 (4 bytes), 2 = domain (1-byte length + name), 3 = IPv6 (16 bytes).
//   A mux command (3) carries no port or address.
// Response header: VER(0) ADDONS_LEN(0), sent before the first bytes back.
// UDP (command 2): after the header, each datagram is LEN(2, big-endian) PAYLOAD both ways, all
// to the one destination of the header.
// Parsers never touch a socket: they say "need more", "done" (with how many bytes they
// consumed) or "error" (with why, for the log; VLESS has no error reply, the caller closes).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "uringproxy/target.h"

namespace up::vless {

enum class Parse : uint8_t { need_more, done, error };

enum class Error : uint8_t {
  none,
  bad_version,       // first byte is not 0 (not VLESS, or a newer version)
  bad_command,       // not 1 (TCP), 2 (UDP) or 3 (mux)
  bad_address_type,  // not 1, 2 or 3
  bad_address,       // empty or invalid domain name
};
// "bad version" etc., for the log.
const char* error_text(Error e);

enum class Command : uint8_t { tcp = 1, udp = 2, mux = 3 };

using Uuid = std::array<uint8_t, 16>;

struct Request {
  Uuid id{};
  Command cmd = Command::tcp;
  uint8_t addons_len = 0;  // addons are skipped; a non-zero length means e.g. an Xray flow
  Target target;           // left empty for mux
};

// The longest request header: 1 + 16 + 1 + 255 addons + 1 + 2 + 1 + 1 + 255 name.
constexpr size_t max_request_size = 533;

// Checks each field as soon as it has arrived, so a wrong version is refused on the first byte
// and an id can be looked up once 17 bytes are in (see id_size) before the rest arrives.
Parse parse_request(std::span<const uint8_t> in, Request& out, size_t& consumed, Error& error);
constexpr size_t id_size = 17;  // VER + ID: enough to read the id with read_id
inline Uuid read_id(std::span<const uint8_t, id_size> in) {
  Uuid id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = in[1 + i];
  return id;
}

// Client side (tests, fuzzer, load tool): no addons. Returns 0 for a domain longer than 255
// bytes or empty. `out` must hold max_request_size bytes.
size_t encode_request(const Request& req, uint8_t* out);

// The response header: 00 00.
size_t encode_response(uint8_t out[2]);

// Textual id "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex, either case) to bytes in written
// order, as v2ray does; false for anything else.
bool parse_uuid(std::string_view text, Uuid& out);
// Canonical lower-case 8-4-4-4-12 form.
std::string format_uuid(const Uuid& id);

// UDP framing. `payload` is a view into `in`; a zero length is a valid empty datagram.
Parse parse_datagram(std::span<const uint8_t> in, std::span<const uint8_t>& payload,
                     size_t& consumed);
constexpr size_t max_datagram_payload = 65535;
// The 2-byte length prefix alone, so a relay can send it and the payload without a copy.
// Returns 0 if `len` is over max_datagram_payload.
size_t encode_datagram_header(size_t len, uint8_t out[2]);
// Prefix and payload; `out` must hold 2 + payload.size() bytes. 0 if the payload is too long.
size_t encode_datagram(std::span<const uint8_t> payload, uint8_t* out);

}  // namespace up::vless
