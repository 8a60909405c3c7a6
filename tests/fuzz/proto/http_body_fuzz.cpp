// Fuzzes BodyTracker: the same stream fed whole and fed in pieces cut where the input says
// must give the same verdict and the same body length.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "uringproxy/http.h"

#include "fuzz_assert.h"

using namespace up::http;


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  BodyFraming framing;
  switch (data[0] % 4) {
    case 0:
    case 1: framing.kind = BodyKind::chunked; break;
    case 2: framing.kind = BodyKind::length; framing.length = data[1] * 7u; break;
    default: framing.kind = BodyKind::until_close; break;
  }
  uint32_t seed = data[2] | data[3] << 8;
  std::string_view stream(reinterpret_cast<const char*>(data + 4), size - 4);

  BodyTracker whole(framing);
  size_t whole_consumed = 0;
  Parse whole_result = whole.feed({stream.data(), stream.size()}, whole_consumed);
  FUZZ_ASSERT(whole_consumed <= stream.size());
  if (whole_result == Parse::need_more) FUZZ_ASSERT(whole_consumed == stream.size());
  FUZZ_ASSERT(whole.done() == (whole_result == Parse::done));
  if (framing.kind == BodyKind::until_close) FUZZ_ASSERT(whole_result == Parse::need_more);
  if (framing.kind == BodyKind::length && whole_result == Parse::done) {
    FUZZ_ASSERT(whole_consumed == framing.length);
  }

  BodyTracker pieces(framing);
  size_t total = 0;
  Parse result = Parse::need_more;
  while (true) {
    seed = seed * 1103515245u + 12345u;
    size_t len = (seed >> 16) % 9;  // pieces of 0..8 bytes, empty ones included
    len = std::min(len, stream.size() - total);
    size_t consumed = 0;
    result = pieces.feed({stream.data() + total, len}, consumed);
    FUZZ_ASSERT(consumed <= len);
    total += consumed;
    if (result != Parse::need_more) break;
    FUZZ_ASSERT(consumed == len);
    if (total == stream.size()) break;
  }
  FUZZ_ASSERT(result == whole_result);
  FUZZ_ASSERT(total == whole_consumed);
  if (result == Parse::done) {
    size_t consumed = 1;
    FUZZ_ASSERT(pieces.feed({stream.data(), stream.size()}, consumed) == Parse::done &&
                consumed == 0);
  }
  return 0;
}
