// Fuzzes the response side of src/proto/http.cpp: status line and headers, framing rules and
// the rewrite sent back to the client, which must keep the status and the body framing.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <strings.h>

#include "uringproxy/http.h"

#include "fuzz_assert.h"

using namespace up::http;


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ResponseHead h;
  Parse p = parse_response_head({in.data(), in.size()}, h);
  if (p == Parse::need_more) {
    FUZZ_ASSERT(size < max_head_bytes);
    if (size > 0) {
      ResponseHead h2;
      FUZZ_ASSERT(parse_response_head({in.data(), size - 1}, h2) == Parse::need_more);
    }
    return 0;
  }
  if (p == Parse::error) return 0;

  FUZZ_ASSERT(h.head_len >= 4 && h.head_len <= size && h.head_len <= max_head_bytes);
  FUZZ_ASSERT(in.substr(h.head_len - 4, 4) == "\r\n\r\n");
  FUZZ_ASSERT(h.status >= 100 && h.status <= 599);
  FUZZ_ASSERT(h.headers.size() <= max_headers);
  {
    ResponseHead h2;
    FUZZ_ASSERT(parse_response_head({in.data(), h.head_len}, h2) == Parse::done &&
                h2.head_len == h.head_len);
    FUZZ_ASSERT(parse_response_head({in.data(), h.head_len - 1}, h2) == Parse::need_more);
  }

  for (std::string_view method : {"GET", "HEAD", "CONNECT", "POST"}) {
    BodyFraming f = response_body_framing(h, method);
    if (method == "HEAD" || h.status < 200 || h.status == 204 || h.status == 304) {
      FUZZ_ASSERT(f.kind == BodyKind::none);
    }
  }

  for (bool close_after : {false, true}) {
    std::string out = rewrite_response_head(h, close_after);
    // Adding Connection: close can push a head that was at a limit over it.
    if (out.size() > max_head_bytes || h.headers.size() >= max_headers) continue;
    ResponseHead back;
    FUZZ_ASSERT(parse_response_head({out.data(), out.size()}, back) == Parse::done);
    FUZZ_ASSERT(back.head_len == out.size() && back.status == h.status &&
                back.version_minor == h.version_minor && back.reason == h.reason);
    BodyFraming a = response_body_framing(h, "GET");
    BodyFraming b = response_body_framing(back, "GET");
    FUZZ_ASSERT(a.kind == b.kind && a.length == b.length);
    if (close_after) FUZZ_ASSERT(wants_close(back.version_minor, back.headers));
    FUZZ_ASSERT(find_header(back.headers, "keep-alive").empty());
    // One Content-Length at most, and none beside Transfer-Encoding.
    int lengths = 0;
    bool coded = false;
    for (const Header& x : back.headers) {
      lengths += x.name.size() == 14 && strncasecmp(x.name.data(), "content-length", 14) == 0;
      coded = coded || (x.name.size() == 17 &&
                        strncasecmp(x.name.data(), "transfer-encoding", 17) == 0);
    }
    FUZZ_ASSERT(lengths <= 1 && !(coded && lengths));
    FUZZ_ASSERT(find_header(back.headers, "proxy-authenticate").empty());
  }
  return 0;
}
