// Fuzzes src/proto/socks5.cpp: every parser on the same bytes, with invariants and
// encode/parse round trips, not only "does not crash".
#include <netinet/in.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "uringproxy/socks5.h"

#include "fuzz_assert.h"

using namespace up::socks5;


namespace {

// Shared checks for "parse(in, consumed)": consumed bounds, and that the verdict is stable
// under truncation: a done message is done on exactly its own bytes and need_more one byte
// short; an incomplete input stays need_more on every prefix.
template <class F>
void check_parser(std::span<const uint8_t> in, F parse) {
  size_t consumed = 12345;
  Parse p = parse(in, consumed);
  FUZZ_ASSERT(consumed <= in.size());
  if (p != Parse::done) FUZZ_ASSERT(consumed == 0);
  if (p == Parse::done) {
    FUZZ_ASSERT(consumed > 0);
    size_t c2 = 0;
    FUZZ_ASSERT(parse(in.first(consumed), c2) == Parse::done && c2 == consumed);
    FUZZ_ASSERT(parse(in.first(consumed - 1), c2) == Parse::need_more && c2 == 0);
  }
  if (p == Parse::need_more && !in.empty()) {
    size_t c2 = 0;
    FUZZ_ASSERT(parse(in.first(in.size() - 1), c2) == Parse::need_more);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);

  check_parser(in, [](std::span<const uint8_t> b, size_t& c) {
    Greeting g;
    return parse_greeting(b, g, c);
  });
  check_parser(in, [](std::span<const uint8_t> b, size_t& c) {
    Credentials cr;
    return parse_userpass(b, cr, c);
  });
  check_parser(in, [](std::span<const uint8_t> b, size_t& c) {
    Request r;
    Reply rp;
    return parse_request(b, r, c, rp);
  });
  check_parser(in, [](std::span<const uint8_t> b, size_t& c) {
    Reply rp;
    return parse_reply(b, rp, c);
  });

  size_t consumed = 0;
  Credentials cred;
  if (parse_userpass(in, cred, consumed) == Parse::done) {
    FUZZ_ASSERT(!cred.username.empty());
    // A NUL would cut the credentials short in crypt(3); such a message is an error.
    FUZZ_ASSERT(cred.username.find('\0') == std::string_view::npos &&
                cred.password.find('\0') == std::string_view::npos);
    uint8_t out[513];
    size_t n = encode_userpass(cred.username, cred.password, out);
    FUZZ_ASSERT(n == consumed && std::memcmp(out, data, n) == 0);
  }

  Request req;
  Reply reply = Reply::succeeded;
  Parse p = parse_request(in, req, consumed, reply);
  if (p == Parse::error) {
    FUZZ_ASSERT(reply == Reply::general_failure || reply == Reply::cmd_not_supported ||
                reply == Reply::atyp_not_supported);
  }
  if (p == Parse::done) {
    FUZZ_ASSERT(reply == Reply::succeeded);
    FUZZ_ASSERT(!req.target.host.empty() && req.target.host.size() <= 255);
    uint8_t out[262];
    size_t n = encode_request(req.cmd, req.target, out);
    FUZZ_ASSERT(n > 0 && n <= sizeof out);
    Request again;
    size_t c2 = 0;
    FUZZ_ASSERT(parse_request({out, n}, again, c2, reply) == Parse::done && c2 == n);
    FUZZ_ASSERT(again.cmd == req.cmd && again.target.kind == req.target.kind &&
                again.target.host == req.target.host && again.target.port == req.target.port &&
                std::memcmp(again.target.ip, req.target.ip, 16) == 0);
    // The target prints as an authority that parses back to itself (port 0 aside).
    if (req.target.port != 0) {
      up::Target t;
      FUZZ_ASSERT(up::parse_authority(req.target.to_string(), 0, t));
      FUZZ_ASSERT(t.host == req.target.host && t.port == req.target.port);
    }
  }

  // encode_reply with an address taken from the input.
  if (size >= 19) {
    uint8_t out[22];
    sockaddr_storage ss{};
    if (data[0] & 1) {
      auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
      s6->sin6_family = AF_INET6;
      std::memcpy(&s6->sin6_addr, data + 1, 16);
      std::memcpy(&s6->sin6_port, data + 17, 2);
    } else {
      auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
      s4->sin_family = AF_INET;
      std::memcpy(&s4->sin_addr, data + 1, 4);
      std::memcpy(&s4->sin_port, data + 5, 2);
    }
    auto code = static_cast<Reply>(data[18] % 9);
    size_t n = encode_reply(code, reinterpret_cast<sockaddr*>(&ss), out);
    FUZZ_ASSERT(n == ((data[0] & 1) ? 22u : 10u));
    Reply back;
    size_t c2 = 0;
    FUZZ_ASSERT(parse_reply({out, n}, back, c2) == Parse::done && c2 == n && back == code);
  }
  return 0;
}
