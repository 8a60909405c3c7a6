// Fuzzes src/proto/vless.cpp: the request and datagram parsers with invariants (consumed
// bounds, a verdict stable under truncation) and encode/parse round trips.
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "uringproxy/vless.h"

#include "fuzz_assert.h"

using namespace up::vless;

namespace {

void check_request(std::span<const uint8_t> in) {
  Request req;
  size_t consumed = 12345;
  Error error = Error::bad_command;
  Parse p = parse_request(in, req, consumed, error);
  FUZZ_ASSERT(consumed <= in.size());
  FUZZ_ASSERT((p == Parse::error) == (error != Error::none));
  if (p != Parse::done) FUZZ_ASSERT(consumed == 0);
  // need_more never asks for more than the longest header allows.
  if (p == Parse::need_more) FUZZ_ASSERT(in.size() < max_request_size);
  if (p == Parse::need_more && !in.empty()) {
    Request r2;
    size_t c2 = 0;
    Error e2;
    FUZZ_ASSERT(parse_request(in.first(in.size() - 1), r2, c2, e2) == Parse::need_more);
  }
  if (p != Parse::done) return;

  FUZZ_ASSERT(consumed >= id_size + 2 && consumed <= max_request_size);
  FUZZ_ASSERT(std::memcmp(req.id.data(), in.data() + 1, 16) == 0);
  FUZZ_ASSERT(read_id(in.first<id_size>()) == req.id);
  {
    Request r2;
    size_t c2 = 0;
    Error e2;
    FUZZ_ASSERT(parse_request(in.first(consumed), r2, c2, e2) == Parse::done && c2 == consumed);
    FUZZ_ASSERT(parse_request(in.first(consumed - 1), r2, c2, e2) == Parse::need_more);
  }
  if (req.cmd == Command::mux) {
    FUZZ_ASSERT(req.target.host.empty() && req.target.port == 0);
  } else {
    FUZZ_ASSERT(!req.target.host.empty() && req.target.host.size() <= 253);
  }

  // Re-encoded without addons, it parses back to the same request.
  uint8_t out[max_request_size];
  size_t n = encode_request(req, out);
  FUZZ_ASSERT(n > 0 && n <= max_request_size);
  Request again;
  size_t c2 = 0;
  Error e2;
  FUZZ_ASSERT(parse_request({out, n}, again, c2, e2) == Parse::done && c2 == n);
  FUZZ_ASSERT(again.id == req.id && again.cmd == req.cmd && again.addons_len == 0 &&
              again.target.kind == req.target.kind && again.target.host == req.target.host &&
              again.target.port == req.target.port &&
              std::memcmp(again.target.ip, req.target.ip, 16) == 0);
}

void check_datagrams(std::span<const uint8_t> in) {
  // A stream of datagrams, as the UDP command carries them.
  while (true) {
    std::span<const uint8_t> payload;
    size_t consumed = 12345;
    Parse p = parse_datagram(in, payload, consumed);
    if (p == Parse::need_more) {
      FUZZ_ASSERT(consumed == 0);
      return;
    }
    FUZZ_ASSERT(p == Parse::done);
    FUZZ_ASSERT(consumed == 2 + payload.size() && consumed <= in.size());
    FUZZ_ASSERT(payload.data() == in.data() + 2);
    static uint8_t out[2 + max_datagram_payload];
    FUZZ_ASSERT(encode_datagram(payload, out) == consumed);
    FUZZ_ASSERT(std::memcmp(out, in.data(), consumed) == 0);
    in = in.subspan(consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  check_request(in);
  check_datagrams(in);

  // The textual id: whatever parses prints back as itself, in lower case.
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Uuid id;
  if (parse_uuid(text, id)) {
    std::string printed = format_uuid(id);
    FUZZ_ASSERT(printed.size() == text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      char c = text[i];
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
      FUZZ_ASSERT(printed[i] == c);
    }
  }
  return 0;
}
