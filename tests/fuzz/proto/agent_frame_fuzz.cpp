// Fuzzes src/proto/agent_frame.cpp: a stream of frames as either end of an agent connection
// receives it, with invariants (consumed bounds, verdict stable under truncation, early refusal)
// and encode/parse round trips.
#include <cstdint>
#include <cstring>
#include <span>

#include "proto/agent_frame.h"

#include "fuzz_assert.h"

using namespace up::agent;

namespace {

bool same(const Message& a, const Message& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<Hello>(&a)) {
    const auto& y = std::get<Hello>(b);
    return x->version == y.version && x->role == y.role && x->id == y.id &&
           x->secret == y.secret && x->software == y.software;
  }
  if (const auto* x = std::get_if<AuthResult>(&a)) {
    const auto& y = std::get<AuthResult>(b);
    return x->code == y.code && x->version == y.version && x->heartbeat_ms == y.heartbeat_ms;
  }
  if (const auto* x = std::get_if<Ping>(&a)) return x->nonce == std::get<Ping>(b).nonce;
  if (const auto* x = std::get_if<Pong>(&a)) return x->nonce == std::get<Pong>(b).nonce;
  if (const auto* x = std::get_if<Tunnel>(&a)) {
    const auto& y = std::get<Tunnel>(b);
    return x->tunnel_id == y.tunnel_id && x->target.kind == y.target.kind &&
           x->target.host == y.target.host && x->target.port == y.target.port &&
           std::memcmp(x->target.ip, y.target.ip, 16) == 0;
  }
  if (const auto* x = std::get_if<TunnelStatus>(&a)) {
    const auto& y = std::get<TunnelStatus>(b);
    return x->tunnel_id == y.tunnel_id && x->code == y.code;
  }
  const auto& x = std::get<ErrorFrame>(a);
  const auto& y = std::get<ErrorFrame>(b);
  return x.code == y.code && x.text == y.text;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  while (true) {
    Message m;
    size_t consumed = 12345;
    Error error = Error::bad_type;
    Parse p = parse_message(in, m, consumed, error);
    FUZZ_ASSERT((p == Parse::error) == (error != Error::none));
    if (p != Parse::done) {
      FUZZ_ASSERT(consumed == 0);
      // Never waits past one frame's bound; a type error comes on the first byte.
      if (p == Parse::need_more) FUZZ_ASSERT(in.size() < max_frame);
      if (error == Error::bad_type) {
        Message m2;
        size_t c2;
        Error e2;
        FUZZ_ASSERT(parse_message(in.first(1), m2, c2, e2) == Parse::error);
      }
      if (p == Parse::need_more && !in.empty()) {
        Message m2;
        size_t c2;
        Error e2;
        FUZZ_ASSERT(parse_message(in.first(in.size() - 1), m2, c2, e2) == Parse::need_more);
      }
      return 0;
    }
    FUZZ_ASSERT(consumed >= header_size + 1 && consumed <= max_frame && consumed <= in.size());
    {
      // The frame alone parses the same; one byte short of it waits for more.
      Message m2;
      size_t c2 = 0;
      Error e2;
      FUZZ_ASSERT(parse_message(in.first(consumed), m2, c2, e2) == Parse::done && c2 == consumed);
      FUZZ_ASSERT(parse_message(in.first(consumed - 1), m2, c2, e2) == Parse::need_more);
    }
    // Whatever parses encodes back and parses to the same message; only a domain target that
    // was a literal in disguise may change its bytes (it is sent back as a literal).
    uint8_t out[max_frame];
    size_t n = encode(m, out);
    FUZZ_ASSERT(n > 0 && n <= max_frame);
    Message again;
    size_t c2 = 0;
    Error e2;
    FUZZ_ASSERT(parse_message({out, n}, again, c2, e2) == Parse::done && c2 == n);
    FUZZ_ASSERT(same(m, again));
    bool literal_name = std::holds_alternative<Tunnel>(m) && in[13] == 0x03 &&
                        std::get<Tunnel>(m).target.kind != up::Target::Kind::domain;
    if (!literal_name) FUZZ_ASSERT(n == consumed && std::memcmp(out, in.data(), n) == 0);
    in = in.subspan(consumed);
  }
}
