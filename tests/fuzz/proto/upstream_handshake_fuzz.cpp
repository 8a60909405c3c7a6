// Fuzzes src/proto/upstream_handshake.cpp with an upstream's byte stream. The first byte picks
// the set-up (bit 0: http, bit 1: credentials, bit 2: a SOCKS5 probe without a target, bit 3:
// UDP ASSOCIATE instead of CONNECT), the second how the stream is cut (0: whole, else pieces
// of that size). Invariants: a failure
// answers the client within the codes docs/wire.md allows; leftover bytes are the stream's
// tail; and the verdict does not depend on the cut the way it must not: one byte at a time
// is the most lenient delivery (a reply's bytes arriving before we sent our next message are
// refused), so whatever a cut accepts, byte-at-a-time accepts the same way, and whatever
// byte-at-a-time refuses, every cut refuses.
#include <cstdint>
#include <string>
#include <vector>

#include "uringproxy/upstream_handshake.h"

#include "fuzz_assert.h"

using up::UpstreamHandshake;
using HS = UpstreamHandshake;

namespace {

struct Outcome {
  HS::Step step;
  std::vector<std::string> sent;
  std::string tunnel;  // leftover() and the stream's bytes after done
  HS::Failure failure;
};

Outcome run(HS hs, const uint8_t* data, size_t size, size_t piece) {
  Outcome o;
  size_t at = 0;
  for (;;) {
    if (hs.step() == HS::Step::send) {
      FUZZ_ASSERT(!hs.output().empty());
      o.sent.emplace_back(hs.output());
      hs.sent();
      FUZZ_ASSERT(hs.step() == HS::Step::recv && hs.output().empty());
      continue;
    }
    if (hs.step() != HS::Step::recv || at == size) break;
    size_t n = piece == 0 ? size - at : std::min(piece, size - at);
    HS::Step s = hs.received({reinterpret_cast<const char*>(data) + at, n});
    FUZZ_ASSERT(s == hs.step());
    at += n;
  }
  o.step = hs.step();
  if (o.step == HS::Step::done) {
    o.tunnel.assign(hs.leftover());
    o.tunnel.append(reinterpret_cast<const char*>(data) + at, size - at);
    // The tunnel's bytes are the stream's tail.
    FUZZ_ASSERT(o.tunnel.size() <= size);
    FUZZ_ASSERT(o.tunnel == std::string(reinterpret_cast<const char*>(data) + size -
                                            o.tunnel.size(),
                                        o.tunnel.size()));
  } else {
    FUZZ_ASSERT(hs.leftover().empty() || o.step == HS::Step::recv);
  }
  if (o.step == HS::Step::failed) {
    o.failure = hs.failure();
    const HS::Failure& f = o.failure;
    FUZZ_ASSERT(!f.why.empty());
    FUZZ_ASSERT(f.socks_reply >= 1 && f.socks_reply <= 6);
    FUZZ_ASSERT(f.http_status == 403 || f.http_status == 502 || f.http_status == 504);
    FUZZ_ASSERT(f.fault != HS::Failure::Fault::after_request);  // only closed() says that
  }
  if (o.step == HS::Step::recv) {
    // Still waiting: the upstream closing now is judged by when it happened.
    HS::Step s = hs.closed(true);
    FUZZ_ASSERT(s == HS::Step::failed);
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  bool http = data[0] & 1, creds = data[0] & 2, probe = (data[0] & 4) && !http;
  bool udp = (data[0] & 8) && !http;
  size_t piece = data[1];
  data += 2;
  size_t size_left = size - 2;
  up::Target target;
  target.kind = up::Target::Kind::domain;
  target.host = "example.com";
  target.port = 443;
  HS hs(http ? HS::Protocol::http : HS::Protocol::socks5, creds ? "user" : "",
        creds ? "password" : "", probe ? nullptr : &target,
        udp ? HS::Request::udp_associate : HS::Request::connect);
  Outcome cut = run(hs, data, size_left, piece);
  Outcome bytewise = run(hs, data, size_left, 1);
  if (cut.step == HS::Step::done) {
    FUZZ_ASSERT(bytewise.step == HS::Step::done);
    FUZZ_ASSERT(bytewise.sent == cut.sent && bytewise.tunnel == cut.tunnel);
  }
  if (bytewise.step == HS::Step::failed) FUZZ_ASSERT(cut.step == HS::Step::failed);
  if (piece == 1) {
    FUZZ_ASSERT(cut.step == bytewise.step && cut.failure.why == bytewise.failure.why);
  }
  return 0;
}
