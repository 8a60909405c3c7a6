// Fuzzes the request side of src/proto/http.cpp: head parsing, framing, absolute URIs,
// forwarding rewrite and Basic credentials. The rewrite must never change how the body is
// framed (that would be request smuggling) and must leave no hop-by-hop header behind.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "uringproxy/http.h"

#include "fuzz_assert.h"

using namespace up::http;


namespace {

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

bool is_tchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void check_head(std::string_view in, const RequestHead& h) {
  FUZZ_ASSERT(h.head_len >= 4 && h.head_len <= in.size() && h.head_len <= max_head_bytes);
  FUZZ_ASSERT(in.substr(h.head_len - 4, 4) == "\r\n\r\n");
  FUZZ_ASSERT(h.version_minor == 0 || h.version_minor == 1);
  FUZZ_ASSERT(!h.method.empty() && !h.target.empty());
  FUZZ_ASSERT(inside(h.method, in) && inside(h.target, in));
  FUZZ_ASSERT(h.headers.size() <= max_headers);
  for (const Header& x : h.headers) {
    FUZZ_ASSERT(!x.name.empty() && inside(x.name, in) && inside(x.value, in));
    for (char c : x.name) FUZZ_ASSERT(is_tchar(c));
    for (char c : x.value) FUZZ_ASSERT(c != '\r' && c != '\n' && c != '\0');
    if (!x.value.empty()) {
      FUZZ_ASSERT(x.value.front() != ' ' && x.value.front() != '\t');
      FUZZ_ASSERT(x.value.back() != ' ' && x.value.back() != '\t');
    }
  }
}

// Case-insensitive: `lower` is the name in lower case.
bool named(const Header& x, std::string_view lower) {
  if (x.name.size() != lower.size()) return false;
  for (size_t i = 0; i < lower.size(); ++i) {
    char c = x.name[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c) != lower[i]) return false;
  }
  return true;
}

void check_credentials(std::string_view value) {
  std::string user, pass;
  if (!parse_basic_credentials(value, user, pass)) return;
  FUZZ_ASSERT(user.find(':') == std::string::npos);
  std::string again_user, again_pass;
  FUZZ_ASSERT(parse_basic_credentials(basic_credentials(user, pass), again_user, again_pass));
  FUZZ_ASSERT(again_user == user && again_pass == pass);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (size < 300) check_credentials(in);

  RequestHead h;
  int status = -1;
  Parse p = parse_request_head({in.data(), in.size()}, h, status);
  if (p == Parse::need_more) {
    FUZZ_ASSERT(size < max_head_bytes && status == 0);
    if (size > 0) {
      RequestHead h2;
      FUZZ_ASSERT(parse_request_head({in.data(), size - 1}, h2, status) == Parse::need_more);
    }
    return 0;
  }
  if (p == Parse::error) {
    FUZZ_ASSERT(status == 400 || status == 431);
    return 0;
  }
  FUZZ_ASSERT(status == 0);
  check_head(in, h);
  {
    // Two Proxy-Authorization headers are a 400: no parsed head carries more than one.
    int credentials = 0;
    for (const Header& x : h.headers) credentials += named(x, "proxy-authorization") ? 1 : 0;
    FUZZ_ASSERT(credentials <= 1);
  }
  {
    RequestHead h2;
    FUZZ_ASSERT(parse_request_head({in.data(), h.head_len}, h2, status) == Parse::done &&
                h2.head_len == h.head_len);
    FUZZ_ASSERT(parse_request_head({in.data(), h.head_len - 1}, h2, status) == Parse::need_more);
  }

  BodyFraming framing;
  bool framing_ok = request_body_framing(h, framing);
  (void)wants_close(h.version_minor, h.headers);
  check_credentials(find_header(h.headers, "proxy-authorization"));

  if (h.method == "CONNECT") {
    up::Target t;
    if (up::parse_authority(h.target, 0, t)) {
      std::string req = encode_connect(t, "");
      RequestHead back;
      FUZZ_ASSERT(parse_request_head({req.data(), req.size()}, back, status) == Parse::done);
      FUZZ_ASSERT(back.head_len == req.size() && back.target == t.to_string());
    }
  }

  up::Target target;
  std::string origin;
  if (!parse_absolute_uri(h.target, target, origin)) return 0;
  FUZZ_ASSERT(!origin.empty() && origin.front() == '/');
  FUZZ_ASSERT(origin.find_first_of(" \r\n#") == std::string::npos);
  std::string out = rewrite_forward_head(h, origin, target);
  RequestHead fwd;
  Parse fp = parse_request_head({out.data(), out.size()}, fwd, status);
  // Adding Host can push a head that was at a limit over it.
  if (out.size() > max_head_bytes || h.headers.size() >= max_headers) return 0;
  FUZZ_ASSERT(fp == Parse::done && fwd.head_len == out.size());
  FUZZ_ASSERT(fwd.method == h.method && fwd.target == origin &&
              fwd.version_minor == h.version_minor);
  int hosts = 0;
  int lengths = 0;
  for (const Header& x : fwd.headers) {
    lengths += named(x, "content-length") ? 1 : 0;
    std::string lower(x.name);
    for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    for (std::string_view hop : {"connection", "keep-alive", "proxy-connection",
                                 "proxy-authorization", "proxy-authenticate", "te", "trailer",
                                 "upgrade"}) {
      FUZZ_ASSERT(lower != hop);
    }
    hosts += lower == "host" ? 1 : 0;
  }
  FUZZ_ASSERT(hosts == 1);
  BodyFraming fwd_framing;
  bool fwd_ok = request_body_framing(fwd, fwd_framing);
  FUZZ_ASSERT(fwd_ok == framing_ok);
  if (framing_ok) {
    FUZZ_ASSERT(fwd_framing.kind == framing.kind && fwd_framing.length == framing.length);
    // Repeated identical lengths go out as one header.
    FUZZ_ASSERT(lengths == (framing.kind == BodyKind::length ? 1 : 0));
  }
  return 0;
}
