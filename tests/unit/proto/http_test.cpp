// Tests for src/proto/http.cpp.
#include "uringproxy/http.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace up::http;
using namespace std::string_literals;

namespace {

std::span<const char> sp(std::string_view s) { return {s.data(), s.size()}; }

Parse parse_req(std::string_view s, RequestHead& h, int& status) {
  return parse_request_head(sp(s), h, status);
}

// Parses a request head that must be valid; the views point into `s`, so pass storage that
// outlives the result (literals, named strings).
RequestHead must_parse(std::string_view s) {
  RequestHead h;
  int status = 0;
  REQUIRE(parse_req(s, h, status) == Parse::done);
  REQUIRE(h.head_len == s.size());
  return h;
}

// The error status, 0 for done, or need_more.
constexpr int need_more = -1;
int request_error(std::string_view s) {
  RequestHead h;
  int status = 0;
  Parse p = parse_req(s, h, status);
  if (p == Parse::error) return status;
  return p == Parse::done ? 0 : need_more;
}

ResponseHead must_parse_response(std::string_view s) {
  ResponseHead h;
  REQUIRE(parse_response_head(sp(s), h) == Parse::done);
  REQUIRE(h.head_len == s.size());
  return h;
}

BodyFraming framing_of(const std::string& head) {
  RequestHead h = must_parse(head);
  BodyFraming f;
  f.kind = BodyKind::until_close;  // must be overwritten
  REQUIRE(request_body_framing(h, f));
  return f;
}

bool framing_ok(const std::string& head) {
  RequestHead h = must_parse(head);
  BodyFraming f;
  return request_body_framing(h, f);
}

BodyFraming response_framing(const std::string& head, std::string_view method = "GET") {
  return response_body_framing(must_parse_response(head), method);
}

const std::string browser_get =
    "GET http://example.com/index.html?q=1 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Proxy-Connection: keep-alive\r\n"
    "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"
    "\r\n";

}  // namespace

// ---- request heads -------------------------------------------------------------------------

TEST_CASE("request head: absolute-form GET") {
  RequestHead h = must_parse(browser_get);
  CHECK(h.method == "GET");
  CHECK(h.target == "http://example.com/index.html?q=1");
  CHECK(h.version_minor == 1);
  REQUIRE(h.headers.size() == 6);
  CHECK(h.headers[0].name == "Host");
  CHECK(h.headers[0].value == "example.com");
  CHECK(h.headers[1].value.substr(0, 11) == "Mozilla/5.0");
  // Zero-copy: views point into the input.
  CHECK(h.method.data() == browser_get.data());
  CHECK(h.headers[0].name.data() >= browser_get.data());
  CHECK(h.headers[0].name.data() < browser_get.data() + browser_get.size());
}

TEST_CASE("request head: CONNECT authority forms") {
  struct Case {
    const char* authority;
    up::Target::Kind kind;
    const char* host;
    uint16_t port;
  };
  Case cases[] = {
      {"example.com:443", up::Target::Kind::domain, "example.com", 443},
      {"[::1]:443", up::Target::Kind::ipv6, "::1", 443},
      {"127.0.0.1:8443", up::Target::Kind::ipv4, "127.0.0.1", 8443},
  };
  for (const Case& c : cases) {
    std::string req = "CONNECT "s + c.authority + " HTTP/1.1\r\nHost: " + c.authority + "\r\n\r\n";
    CAPTURE(req);
    RequestHead h = must_parse(req);
    CHECK(h.method == "CONNECT");
    CHECK(h.target == c.authority);
    up::Target t;
    REQUIRE(up::parse_authority(h.target, 0, t));
    CHECK(t.kind == c.kind);
    CHECK(t.host == c.host);
    CHECK(t.port == c.port);
  }
  // CONNECT needs a port: authority parsing with no default refuses a bare host.
  RequestHead h = must_parse("CONNECT example.com HTTP/1.1\r\n\r\n");
  up::Target t;
  CHECK_FALSE(up::parse_authority(h.target, 0, t));
}

TEST_CASE("request head: HTTP/1.0, header value trimming, empty values") {
  RequestHead h = must_parse(
      "POST http://h/ HTTP/1.0\r\nX-A:\t  spaced value \t\r\nX-Empty:\r\nX-B:v\r\n\r\n");
  CHECK(h.version_minor == 0);
  REQUIRE(h.headers.size() == 3);
  CHECK(h.headers[0].value == "spaced value");
  CHECK(h.headers[1].value.empty());
  CHECK(h.headers[2].value == "v");
}

TEST_CASE("request head: obs-text passes, control characters do not") {
  CHECK(request_error("GET http://h/\xc3\xa9 HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n") == 0);
  CHECK(request_error("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n") == 400);
  CHECK(request_error("GET / HTTP/1.1\r\nX: a\x7fz\r\n\r\n") == 400);
  CHECK(request_error("GET / HTTP/1.1\r\nX: a"s + '\0' + "z\r\n\r\n") == 400);
  CHECK(request_error("GET /\x01 HTTP/1.1\r\n\r\n") == 400);
}

TEST_CASE("request head: every truncation says need_more") {
  const std::string msgs[] = {
      browser_get,
      "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
      "\r\nGET / HTTP/1.0\r\n\r\n",
  };
  for (const std::string& msg : msgs) {
    for (size_t n = 0; n < msg.size(); ++n) {
      CAPTURE(n);
      RequestHead h;
      int status = -1;
      CHECK(parse_req(std::string_view(msg).substr(0, n), h, status) == Parse::need_more);
      CHECK(status == 0);
    }
    must_parse(msg);
  }
}

TEST_CASE("request head: pipelined bytes stay for the next message") {
  std::string body = "hello";
  std::string next = "GET http://h/2 HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string stream = browser_get + body + next;
  RequestHead h;
  int status = 0;
  REQUIRE(parse_req(stream, h, status) == Parse::done);
  CHECK(h.head_len == browser_get.size());
  RequestHead h2;
  REQUIRE(parse_req(std::string_view(stream).substr(h.head_len + body.size()), h2, status) ==
          Parse::done);
  CHECK(h2.target == "http://h/2");
  CHECK(h2.head_len == next.size());
}

TEST_CASE("request head: leading empty lines are skipped and counted") {
  std::string s = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
  RequestHead h = must_parse(s);
  CHECK(h.method == "GET");
  CHECK(h.head_len == s.size());
}

TEST_CASE("request head: malformed is 400") {
  const std::string bad[] = {
      "GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",         // obs-fold
      "GET / HTTP/1.1\r\n\tX: a\r\n\r\n",                     // leading whitespace
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",                   // space before colon
      "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",                  // tab before colon
      "GET / HTTP/1.1\r\nBad(Name): h\r\n\r\n",               // non-token name
      "GET / HTTP/1.1\r\n: empty name\r\n\r\n",               // empty name
      "GET / HTTP/1.1\r\nNoColon\r\n\r\n",                    // no colon
      "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",                    // bare CR in a value
      "GET / HTTP/1.1\rX: a\r\n\r\n",                         // bare CR after start line
      "GET / HTTP/1.1\nHost: h\n\n",                          // bare LF (strict CRLF)
      "GET / HTTP/1.1\r\nHost: h\n\r\n",                      // one bare LF
      "GET / HTTP/2.0\r\n\r\n",                               // version
      "GET / HTTP/1.2\r\n\r\n",
      "GET / HTTP/0.9\r\n\r\n",
      "GET / http/1.1\r\n\r\n",
      "GET / HTTP/1.1 \r\n\r\n",
      "GET /\r\n\r\n",                                        // HTTP/0.9 form
      "GET  / HTTP/1.1\r\n\r\n",                              // two spaces
      "GET / extra HTTP/1.1\r\n\r\n",
      " GET / HTTP/1.1\r\n\r\n",
      "G@T / HTTP/1.1\r\n\r\n",                               // non-token method
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",         // duplicate Host
      "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
  };
  for (const std::string& b : bad) {
    CAPTURE(b);
    CHECK(request_error(b) == 400);
  }
}

TEST_CASE("request head: two Proxy-Authorization headers are a 400, whoever they name") {
  const std::string alice = "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n";  // alice:secret
  const std::string bob = "proxy-authorization: Basic Ym9iOnNlY3JldA==\r\n";    // bob:secret
  for (std::string line :
       {"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n", "GET http://h/ HTTP/1.1\r\nHost: h\r\n"}) {
    CAPTURE(line);
    CHECK(request_error(line + alice + bob + "\r\n") == 400);
    CHECK(request_error(line + alice + "X: 1\r\n" + alice + "\r\n") == 400);  // even the same
    CHECK(request_error(line + "Proxy-Authorization: \r\n" + bob + "\r\n") == 400);
    CHECK(request_error(line + alice + "\r\n") == 0);  // one is fine
  }
}

TEST_CASE("request head: garbage is refused before the head is complete") {
  // A TLS ClientHello sent to a plain HTTP listener.
  CHECK(request_error("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s) == 400);
  CHECK(request_error("GET / HTTP/2") == 400);
  CHECK(request_error("GET / HTTP/1.1x") == 400);
  CHECK(request_error("GET / FTP") == 400);
  CHECK(request_error("GET\t/") == 400);
  // ... but a valid start is need_more, including when cut right after the CR.
  CHECK(request_error("GET / HTTP/1.") == need_more);
  CHECK(request_error("GET / HTTP/1.1\r") == need_more);
  CHECK(request_error("\r") == need_more);
}

TEST_CASE("request head: 431 when too large or too many headers") {
  std::string start = "GET http://h/ HTTP/1.1\r\n";

  SUBCASE("exactly max_head_bytes is accepted") {
    std::string filler(max_head_bytes - start.size() - 2 - 5, 'a');
    std::string s = start + "X: " + filler + "\r\n\r\n";
    REQUIRE(s.size() == max_head_bytes);
    RequestHead h = must_parse(s);
    CHECK(h.head_len == max_head_bytes);
  }
  SUBCASE("one byte more is 431, at once when the buffer is full") {
    std::string filler(max_head_bytes - start.size() - 2 - 5 + 1, 'a');
    std::string s = start + "X: " + filler + "\r\n\r\n";
    CHECK(request_error(s) == 431);
    // Without the end: need_more below the limit, 431 at it.
    CHECK(request_error(s.substr(0, max_head_bytes - 1)) == need_more);
    CHECK(request_error(s.substr(0, max_head_bytes)) == 431);
  }
  SUBCASE("a huge request line") {
    std::string s = "GET http://h/" + std::string(max_head_bytes, 'p') + " HTTP/1.1\r\n\r\n";
    CHECK(request_error(s) == 431);
  }
  SUBCASE("max_headers headers is fine, one more is 431") {
    std::string s = start;
    for (size_t i = 0; i < max_headers; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
    RequestHead h = must_parse(s + "\r\n");
    CHECK(h.headers.size() == max_headers);
    CHECK(request_error(s + "X-Last: v\r\n\r\n") == 431);
  }
}

// ---- response heads ------------------------------------------------------------------------

TEST_CASE("response head: status lines") {
  ResponseHead h = must_parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  CHECK(h.status == 200);
  CHECK(h.version_minor == 1);
  CHECK(h.reason == "OK");
  REQUIRE(h.headers.size() == 1);

  h = must_parse_response("HTTP/1.0 404 Not Found Here\r\n\r\n");
  CHECK(h.status == 404);
  CHECK(h.version_minor == 0);
  CHECK(h.reason == "Not Found Here");

  h = must_parse_response("HTTP/1.1 204 \r\n\r\n");
  CHECK(h.status == 204);
  CHECK(h.reason.empty());
  h = must_parse_response("HTTP/1.1 204\r\n\r\n");  // reason and its space omitted
  CHECK(h.status == 204);

  h = must_parse_response("HTTP/1.1 200 Connection established\r\n\r\n");
  CHECK(h.reason == "Connection established");
}

TEST_CASE("response head: truncations, pipelined body, errors") {
  std::string msg = "HTTP/1.1 301 Moved\r\nLocation: http://x/\r\nContent-Length: 0\r\n\r\n";
  for (size_t n = 0; n < msg.size(); ++n) {
    CAPTURE(n);
    ResponseHead h;
    CHECK(parse_response_head(sp(std::string_view(msg).substr(0, n)), h) == Parse::need_more);
  }
  ResponseHead h;
  std::string stream = msg + "HTTP/1.1 200 OK\r\n\r\n";
  REQUIRE(parse_response_head(sp(stream), h) == Parse::done);
  CHECK(h.head_len == msg.size());

  const std::string bad[] = {
      "HTTP/1.1 20 OK\r\n\r\n",    "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n",
      "HTTP/1.1 600 x\r\n\r\n",    "HTTP/2 200 OK\r\n\r\n",    "HTTP/1.1  200 OK\r\n\r\n",
      "HTTP/1.1 2x0 OK\r\n\r\n",   "HTTP/1.1 200OK\r\n\r\n",   "ICY 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",  "HTTP/1.1 200 OK\nA: b\n\n",
      "HTTP/1.1 200 O\x01K\r\n\r\n",
  };
  for (const std::string& b : bad) {
    CAPTURE(b);
    ResponseHead r;
    CHECK(parse_response_head(sp(b), r) == Parse::error);
  }
  std::string huge = "HTTP/1.1 200 OK\r\nX: " + std::string(max_head_bytes, 'a');
  ResponseHead r;
  CHECK(parse_response_head(sp(huge), r) == Parse::error);
}

// ---- header helpers ------------------------------------------------------------------------

TEST_CASE("find_header and header_has_token") {
  RequestHead h = must_parse(
      "GET / HTTP/1.1\r\nhOsT: a\r\nConnection: keep-alive , X-Foo\r\n"
      "connection: ,,Upgrade\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n");
  CHECK(find_header(h.headers, "host") == "a");
  CHECK(find_header(h.headers, "HOST") == "a");
  CHECK(find_header(h.headers, "x-dup") == "1");
  CHECK(find_header(h.headers, "missing").empty());
  CHECK(header_has_token(h.headers, "Connection", "keep-alive"));
  CHECK(header_has_token(h.headers, "connection", "x-foo"));
  CHECK(header_has_token(h.headers, "connection", "UPGRADE"));  // second Connection line
  CHECK_FALSE(header_has_token(h.headers, "connection", "close"));
  CHECK_FALSE(header_has_token(h.headers, "connection", "keep"));
  CHECK_FALSE(header_has_token(h.headers, "connection", ""));
  CHECK_FALSE(header_has_token(h.headers, "x-missing", "keep-alive"));
}

// ---- body framing --------------------------------------------------------------------------

TEST_CASE("request_body_framing") {
  CHECK(framing_of("GET / HTTP/1.1\r\n\r\n").kind == BodyKind::none);

  BodyFraming f = framing_of("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n");
  CHECK(f.kind == BodyKind::length);
  CHECK(f.length == 42);
  f = framing_of("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  CHECK(f.kind == BodyKind::length);
  CHECK(f.length == 0);
  f = framing_of("POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n");
  CHECK(f.kind == BodyKind::length);
  CHECK(f.length == 7);
  f = framing_of("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n");
  CHECK(f.length == 7);
  f = framing_of("POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n");
  CHECK(f.length == UINT64_MAX);

  f = framing_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  CHECK(f.kind == BodyKind::chunked);
  f = framing_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n");
  CHECK(f.kind == BodyKind::chunked);
  f = framing_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
  CHECK(f.kind == BodyKind::chunked);

  const std::string refused[] = {
      "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      // CL + TE: the classic smuggling pair.
      "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
      // TE in HTTP/1.0 is faulty framing (RFC 9112 6.1).
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
  };
  for (const std::string& r : refused) {
    CAPTURE(r);
    CHECK_FALSE(framing_ok(r));
  }
}

TEST_CASE("response_body_framing") {
  CHECK(response_framing("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD").kind ==
        BodyKind::none);
  CHECK(response_framing("HTTP/1.1 100 Continue\r\n\r\n").kind == BodyKind::none);
  CHECK(response_framing("HTTP/1.1 101 Switching Protocols\r\n\r\n").kind == BodyKind::none);
  CHECK(response_framing("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n").kind ==
        BodyKind::none);
  CHECK(response_framing("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n")
            .kind == BodyKind::none);
  CHECK(response_framing("HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT").kind ==
        BodyKind::none);
  CHECK(response_framing("HTTP/1.1 407 Auth\r\nContent-Length: 4\r\n\r\n", "CONNECT").kind ==
        BodyKind::length);

  BodyFraming f = response_framing("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  CHECK(f.kind == BodyKind::length);
  CHECK(f.length == 10);
  CHECK(response_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").kind ==
        BodyKind::chunked);
  // TE overrides CL in a response.
  CHECK(response_framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
            .kind == BodyKind::chunked);
  // No framing, a coding we cannot follow, chunked in 1.0 or a bad length: until close.
  CHECK(response_framing("HTTP/1.1 200 OK\r\n\r\n").kind == BodyKind::until_close);
  CHECK(response_framing("HTTP/1.0 200 OK\r\n\r\n").kind == BodyKind::until_close);
  CHECK(response_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").kind ==
        BodyKind::until_close);
  CHECK(response_framing("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").kind ==
        BodyKind::until_close);
  // A head built by hand with a conflicting length (the parser refuses one): until close.
  ResponseHead conflicting;
  conflicting.status = 200;
  conflicting.headers = {{"Content-Length", "1"}, {"Content-Length", "2"}};
  CHECK(response_body_framing(conflicting, "GET").kind == BodyKind::until_close);
}

TEST_CASE("response head: a Content-Length that cannot be trusted is an error (a 502)") {
  const std::string bad[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
      "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\ncontent-length: 5, 7\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
      "HTTP/1.0 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
  };
  for (const std::string& b : bad) {
    CAPTURE(b);
    ResponseHead r;
    CHECK(parse_response_head(sp(b), r) == Parse::error);
  }
  // Repeated identical values are one length (RFC 9112 6.3).
  BodyFraming f =
      response_framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
  CHECK(f.kind == BodyKind::length);
  CHECK(f.length == 5);
  // Transfer-Encoding overrides Content-Length, whatever it says.
  CHECK(response_framing(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1, 2\r\n\r\n")
            .kind == BodyKind::chunked);
}

namespace {

// Feeds `stream` in pieces cut at `cuts`; returns total consumed and the last result.
Parse feed_in_pieces(BodyTracker& t, std::string_view stream, const std::vector<size_t>& cuts,
                     size_t& total) {
  total = 0;
  size_t pos = 0;
  Parse p = Parse::need_more;
  std::vector<size_t> ends = cuts;
  ends.push_back(stream.size());
  for (size_t end : ends) {
    if (end < pos) continue;
    // After done, the tracker consumes nothing more of what follows.
    std::string_view piece = stream.substr(total, end - total);
    size_t consumed = 0;
    p = t.feed(sp(piece), consumed);
    REQUIRE(consumed <= piece.size());
    total += consumed;
    if (p != Parse::need_more) return p;
    REQUIRE(consumed == piece.size());  // need_more means every byte was body
    pos = end;
  }
  return p;
}

const std::string chunked_body =
    "5\r\nhello\r\n"
    "1A;name=value;quoted=\"a b\"\r\n" + std::string(26, 'x') + "\r\n"
    "0\r\n"
    "Trailer-One: 1\r\n"
    "Trailer-Two: two\r\n"
    "\r\n";

}  // namespace

TEST_CASE("BodyTracker: content length at every split") {
  std::string body(100, 'b');
  std::string next = "GET / HTTP/1.1\r\n\r\n";
  std::string stream = body + next;
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    CAPTURE(cut);
    BodyTracker t(BodyFraming{BodyKind::length, body.size()});
    size_t total = 0;
    CHECK(feed_in_pieces(t, stream, {cut}, total) == Parse::done);
    CHECK(total == body.size());
    CHECK(t.done());
  }
}

TEST_CASE("BodyTracker: chunked body split at every byte boundary") {
  std::string next = "POST / HTTP/1.1\r\n\r\n";
  std::string stream = chunked_body + next;
  // One cut anywhere.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    CAPTURE(cut);
    BodyTracker t(BodyFraming{BodyKind::chunked, 0});
    size_t total = 0;
    CHECK(feed_in_pieces(t, stream, {cut}, total) == Parse::done);
    CHECK(total == chunked_body.size());
  }
  // Two cuts anywhere.
  for (size_t a = 0; a <= chunked_body.size(); a += 3) {
    for (size_t b = a; b <= chunked_body.size(); ++b) {
      BodyTracker t(BodyFraming{BodyKind::chunked, 0});
      size_t total = 0;
      REQUIRE(feed_in_pieces(t, stream, {a, b}, total) == Parse::done);
      REQUIRE(total == chunked_body.size());
    }
  }
  // One byte at a time: need_more on every byte until the very last one.
  BodyTracker t(BodyFraming{BodyKind::chunked, 0});
  for (size_t i = 0; i < chunked_body.size(); ++i) {
    CAPTURE(i);
    size_t consumed = 0;
    Parse p = t.feed(sp(std::string_view(chunked_body).substr(i, 1)), consumed);
    CHECK(consumed == 1);
    CHECK(p == (i + 1 == chunked_body.size() ? Parse::done : Parse::need_more));
  }
  CHECK(t.done());
  size_t consumed = 9;
  CHECK(t.feed(sp(next), consumed) == Parse::done);
  CHECK(consumed == 0);
}

TEST_CASE("BodyTracker: minimal and large chunked bodies") {
  std::string last_only = "0\r\n\r\n";
  BodyTracker t(BodyFraming{BodyKind::chunked, 0});
  size_t consumed = 0;
  CHECK(t.feed(sp(last_only + "X"), consumed) == Parse::done);
  CHECK(consumed == last_only.size());

  // The largest size we accept: 16 hex digits. The data never ends in this test.
  BodyTracker big(BodyFraming{BodyKind::chunked, 0});
  std::string s = "ffffffffffffffff\r\n" + std::string(1000, 'd');
  CHECK(big.feed(sp(s), consumed) == Parse::need_more);
  CHECK(consumed == s.size());

  // Leading zeros count toward the digit limit.
  BodyTracker zeros(BodyFraming{BodyKind::chunked, 0});
  CHECK(zeros.feed(sp("000000000000000A\r\n0123456789\r\n0\r\n\r\n"), consumed) == Parse::done);
}

TEST_CASE("BodyTracker: chunk syntax errors") {
  const std::string bad[] = {
      "g\r\n",                      // not hex
      "\r\n",                       // no digits
      ";ext\r\n",                   // extension without size
      "-5\r\n",
      "0x5\r\n",
      "5 \r\nhello\r\n0\r\n\r\n",   // whitespace after the size
      " 5\r\nhello\r\n0\r\n\r\n",
      "10000000000000000\r\n",      // 17 digits
      "5\nhello\r\n0\r\n\r\n",      // bare LF after the size
      "5\rhello",                   // bare CR
      "5\r\nhelloX\r\n",            // data longer than the size
      "5\r\nhello\n0\r\n\r\n",      // data not followed by CRLF
      "5;ext\n",
      "5;e\x01xt\r\n",
      "0\r\nTrailer: a\n\r\n",      // bare LF in a trailer
      "0\r\n folded\r\n\r\n",       // obs-fold in trailers
      "0\r\n\rX",                   // final CR without LF
      "0\r\n\n",
  };
  for (const std::string& b : bad) {
    CAPTURE(b);
    BodyTracker t(BodyFraming{BodyKind::chunked, 0});
    size_t consumed = 0;
    CHECK(t.feed(sp(b), consumed) == Parse::error);
    CHECK(consumed <= b.size());
    CHECK_FALSE(t.done());
  }
}

TEST_CASE("BodyTracker: none, zero length and until_close") {
  size_t consumed = 7;
  BodyTracker none(BodyFraming{BodyKind::none, 0});
  CHECK(none.done());
  CHECK(none.feed(sp("abc"), consumed) == Parse::done);
  CHECK(consumed == 0);

  BodyTracker zero(BodyFraming{BodyKind::length, 0});
  CHECK(zero.done());
  CHECK(zero.feed(sp("abc"), consumed) == Parse::done);
  CHECK(consumed == 0);

  BodyTracker forever(BodyFraming{BodyKind::until_close, 0});
  for (int i = 0; i < 3; ++i) {
    CHECK(forever.feed(sp("0\r\n\r\n"), consumed) == Parse::need_more);
    CHECK(consumed == 5);
  }
  CHECK_FALSE(forever.done());
  CHECK(forever.feed({}, consumed) == Parse::need_more);
  CHECK(consumed == 0);

  BodyTracker len(BodyFraming{BodyKind::length, 3});
  CHECK(len.feed({}, consumed) == Parse::need_more);
  CHECK(consumed == 0);
}

// ---- absolute URIs and rewriting -----------------------------------------------------------

TEST_CASE("parse_absolute_uri") {
  up::Target t;
  std::string origin;
  struct Ok {
    const char* uri;
    const char* host;
    uint16_t port;
    const char* origin;
  };
  Ok oks[] = {
      {"http://example.com/path/x?q=1&r=2", "example.com", 80, "/path/x?q=1&r=2"},
      {"http://example.com", "example.com", 80, "/"},
      {"http://example.com:8080", "example.com", 8080, "/"},
      {"http://example.com:8080/", "example.com", 8080, "/"},
      {"http://example.com?q", "example.com", 80, "/?q"},
      {"http://example.com/a#frag", "example.com", 80, "/a"},
      {"http://example.com#frag", "example.com", 80, "/"},
      {"HTTP://Example.COM/A", "Example.COM", 80, "/A"},
      {"http://[::1]:8080/x", "::1", 8080, "/x"},
      {"http://[::1]/", "::1", 80, "/"},
      {"http://10.0.0.1:81/", "10.0.0.1", 81, "/"},
      {"http://example.com:/x", "example.com", 80, "/x"},
  };
  for (const Ok& o : oks) {
    std::string uri = o.uri;
    CAPTURE(uri);
    REQUIRE(parse_absolute_uri(o.uri, t, origin));
    CHECK(t.host == o.host);
    CHECK(t.port == o.port);
    CHECK(origin == o.origin);
  }
  const char* refused[] = {
      "https://example.com/",          // TLS is CONNECT's job
      "ftp://example.com/",
      "http://user:pass@example.com/", // userinfo
      "http://user@example.com/",
      "http://@example.com/",
      "/origin/form",
      "example.com:80",
      "http://",
      "http:///path",
      "http://exa mple.com/",
      "http://example.com:99999/",
      "http://example.com:0/",
      "http://[::1/",
      "http:example.com",
      "http://example.com/a b",
      "http://example.com/a\r\nX: injected",
  };
  t.host = "unchanged";
  for (const char* r : refused) {
    std::string uri = r;
    CAPTURE(uri);
    CHECK_FALSE(parse_absolute_uri(r, t, origin));
  }
  CHECK(t.host == "unchanged");
}

TEST_CASE("rewrite_forward_head: origin form, hop-by-hop removal, Host") {
  std::string req =
      "POST http://example.com:8080/upload?x=1 HTTP/1.1\r\n"
      "Host: example.com:8080\r\n"
      "Connection: keep-alive, X-Secret, Content-Length, Host\r\n"
      "Keep-Alive: timeout=5\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"
      "Proxy-Authenticate: nonsense\r\n"
      "TE: trailers\r\n"
      "Trailer: X-Checksum\r\n"
      "Upgrade: websocket\r\n"
      "X-Secret: drop me\r\n"
      "x-secret: me too\r\n"
      "Content-Length: 5\r\n"
      "Transfer-Encoding-Not: kept\r\n"
      "Accept: */*\r\n"
      "\r\n";
  RequestHead h = must_parse(req);
  up::Target t;
  std::string origin;
  REQUIRE(parse_absolute_uri(h.target, t, origin));
  std::string out = rewrite_forward_head(h, origin, t);
  CHECK(out ==
        "POST /upload?x=1 HTTP/1.1\r\n"
        "Host: example.com:8080\r\n"
        "Content-Length: 5\r\n"
        "Transfer-Encoding-Not: kept\r\n"
        "Accept: */*\r\n"
        "\r\n");
  RequestHead again = must_parse(out);
  CHECK(again.target == "/upload?x=1");
}

TEST_CASE("rewrite_forward_head: Host added when absent, replaced when it disagrees") {
  up::Target t;
  std::string origin;

  RequestHead h = must_parse("GET http://example.com/ HTTP/1.1\r\nAccept: */*\r\n\r\n");
  REQUIRE(parse_absolute_uri(h.target, t, origin));
  CHECK(rewrite_forward_head(h, origin, t) ==
        "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");

  h = must_parse("GET http://[::1]:8080/x HTTP/1.0\r\n\r\n");
  REQUIRE(parse_absolute_uri(h.target, t, origin));
  CHECK(rewrite_forward_head(h, origin, t) == "GET /x HTTP/1.0\r\nHost: [::1]:8080\r\n\r\n");

  // The origin serves the name that routing and ACLs saw, not another one.
  h = must_parse("GET http://allowed.example/ HTTP/1.1\r\nA: 1\r\nHost: other.example\r\nB: 2\r\n\r\n");
  REQUIRE(parse_absolute_uri(h.target, t, origin));
  CHECK(rewrite_forward_head(h, origin, t) ==
        "GET / HTTP/1.1\r\nA: 1\r\nHost: allowed.example\r\nB: 2\r\n\r\n");
}

TEST_CASE("rewrite_forward_head: repeated identical Content-Lengths go out as one") {
  up::Target t;
  std::string origin;
  for (const std::string& lengths :
       {"Content-Length: 5\r\nX: 1\r\ncontent-length: 5\r\n"s, "Content-Length: 5, 5\r\nX: 1\r\n"s,
        "content-length: 5,5, 5\r\nX: 1\r\nContent-Length: 5\r\n"s,
        "Content-Length: 05\r\nX: 1\r\n"s}) {
    CAPTURE(lengths);
    std::string req = "POST http://h/p HTTP/1.1\r\nHost: h\r\n" + lengths + "\r\n";
    RequestHead h = must_parse(req);
    REQUIRE(parse_absolute_uri(h.target, t, origin));
    CHECK(rewrite_forward_head(h, origin, t) ==
          "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX: 1\r\n\r\n");
  }
  // Differing values are not folded: the framing refuses them (a 400), and they pass through
  // unchanged so the rewrite cannot make them look valid.
  std::string req = "POST http://h/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n";
  RequestHead h = must_parse(req);
  REQUIRE(parse_absolute_uri(h.target, t, origin));
  BodyFraming f;
  CHECK_FALSE(request_body_framing(h, f));
  CHECK(rewrite_forward_head(h, origin, t) ==
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n");
}

TEST_CASE("rewrite_forward_head: chunked framing passes through") {
  RequestHead h = must_parse(
      "PUT http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
      "Connection: transfer-encoding\r\n\r\n");
  up::Target t;
  std::string origin;
  REQUIRE(parse_absolute_uri(h.target, t, origin));
  std::string out = rewrite_forward_head(h, origin, t);
  RequestHead again = must_parse(out);
  CHECK(find_header(again.headers, "transfer-encoding") == "chunked");
  BodyFraming f;
  REQUIRE(request_body_framing(again, f));
  CHECK(f.kind == BodyKind::chunked);
  CHECK(find_header(again.headers, "connection").empty());
}

TEST_CASE("rewrite_response_head") {
  ResponseHead h = must_parse_response(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\n"
      "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
  CHECK(rewrite_response_head(h, false) ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n");
  CHECK(rewrite_response_head(h, true) ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n");
  h = must_parse_response("HTTP/1.0 404 \r\nContent-Length: 0\r\n\r\n");
  std::string out = rewrite_response_head(h, true);
  ResponseHead again = must_parse_response(out);
  CHECK(again.status == 404);
  CHECK(again.version_minor == 0);
  CHECK(find_header(again.headers, "content-length") == "0");
  CHECK(header_has_token(again.headers, "connection", "close"));
}

TEST_CASE("rewrite_response_head: one Content-Length, none beside Transfer-Encoding") {
  ResponseHead h = must_parse_response(
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: 1\r\nContent-Length: 5\r\n\r\n");
  CHECK(rewrite_response_head(h, false) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: 1\r\n\r\n");
  h = must_parse_response("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n");
  CHECK(rewrite_response_head(h, true) ==
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
  // RFC 9112 6.1: a proxy removes Content-Length from a message with Transfer-Encoding.
  h = must_parse_response(
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
  CHECK(rewrite_response_head(h, false) ==
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST_CASE("wants_close") {
  auto close_of = [](const std::string& req) {
    RequestHead h = must_parse(req);
    return wants_close(h.version_minor, h.headers);
  };
  CHECK_FALSE(close_of("GET / HTTP/1.1\r\n\r\n"));
  CHECK(close_of("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
  CHECK(close_of("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
  CHECK(close_of("GET / HTTP/1.1\r\nProxy-Connection: close\r\n\r\n"));
  CHECK_FALSE(close_of("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
  CHECK(close_of("GET / HTTP/1.0\r\n\r\n"));
  CHECK_FALSE(close_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  CHECK_FALSE(close_of("GET / HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"));
  CHECK(close_of("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
  CHECK(close_of("GET / HTTP/1.0\r\nX-Connection: keep-alive\r\n\r\n"));
}

// ---- credentials and canned responses ------------------------------------------------------

TEST_CASE("Basic credentials round trip") {
  struct Pair {
    std::string user, pass;
  };
  Pair pairs[] = {
      {"alice", "secret"},       {"alice.us-east", "p:a:s:s"}, {"bob", ""},
      {"", "nouser"},            {"u", "p"},                   {"ü-ser", "pässwörd ✓"},
      {"ab", "c"},               {"abc", "de"},                {std::string(300, 'x'), "y"},
  };
  for (const Pair& p : pairs) {
    CAPTURE(p.user);
    std::string header = basic_credentials(p.user, p.pass);
    CHECK(header.rfind("Basic ", 0) == 0);
    std::string user = "old", pass = "old";
    REQUIRE(parse_basic_credentials(header, user, pass));
    CHECK(user == p.user);
    CHECK(pass == p.pass);
  }
  CHECK(basic_credentials("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}

TEST_CASE("Basic credentials: accepted spellings and malformed values") {
  std::string user, pass;
  REQUIRE(parse_basic_credentials("basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", user, pass));
  CHECK(user == "Aladdin");
  CHECK(pass == "open sesame");
  REQUIRE(parse_basic_credentials("BASIC   QWxhZGRpbjpvcGVuIHNlc2FtZQ==  ", user, pass));
  CHECK(user == "Aladdin");
  // Unpadded base64 is common enough to accept.
  REQUIRE(parse_basic_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ", user, pass));
  CHECK(pass == "open sesame");

  const std::string bad[] = {
      "",
      "Basic",
      "Basic ",
      "BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
      "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
      "Digest username=\"a\"",
      "Basic bm9jb2xvbg==",                   // "nocolon"
      "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=",    // wrong padding
      "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ===",
      "Basic QWxhZGRp bjpvcGVuIHNlc2FtZQ==",  // space inside
      "Basic QWxh*GRpbjpvcGVuIHNlc2FtZQ==",   // not base64
      "Basic Q",                              // impossible length
      "Basic ====",
      "Basic YTpiAGM=",                       // "a:b\0c": NUL in the password
      "Basic YTpiCmM=",                       // "a:b\nc"
  };
  for (const std::string& b : bad) {
    CAPTURE(b);
    CHECK_FALSE(parse_basic_credentials(b, user, pass));
  }
}

TEST_CASE("quota_exceeded_response: 429 whose body says why") {
  std::string_view r = quota_exceeded_response();
  ResponseHead h;
  REQUIRE(parse_response_head(sp(r), h) == Parse::done);
  CHECK(h.status == 429);
  CHECK(header_has_token(h.headers, "connection", "close"));
  CHECK(find_header(h.headers, "content-length") == "15");
  CHECK(r.substr(h.head_len) == "quota exceeded\n");
}

TEST_CASE("status_response: canned responses parse and close") {
  for (int code : {400, 403, 407, 429, 431, 500, 502, 503, 504}) {
    CAPTURE(code);
    std::string_view r = status_response(code);
    ResponseHead h;
    REQUIRE(parse_response_head(sp(r), h) == Parse::done);
    CHECK(h.head_len == r.size());
    CHECK(h.status == code);
    CHECK(header_has_token(h.headers, "connection", "close"));
    CHECK(find_header(h.headers, "content-length") == "0");
    CHECK(response_body_framing(h, "GET").kind == BodyKind::length);
    CHECK(status_response(code).data() == r.data());  // static storage, same every time
  }
  ResponseHead h;
  REQUIRE(parse_response_head(sp(status_response(407)), h) == Parse::done);
  CHECK(find_header(h.headers, "proxy-authenticate") == "Basic realm=\"uringproxy\"");
  CHECK(status_response(200) == "HTTP/1.1 200 Connection established\r\n\r\n");
  CHECK(status_response(999) == status_response(500));
}

TEST_CASE("encode_connect round-trips through the request parser") {
  const char* authorities[] = {"example.com:443", "[::1]:443", "1.2.3.4:8080"};
  for (const char* a : authorities) {
    std::string text = a;
    CAPTURE(text);
    up::Target t;
    REQUIRE(up::parse_authority(a, 0, t));
    std::string auth = basic_credentials("u", "p");
    for (bool with_auth : {false, true}) {
      std::string req = encode_connect(t, with_auth ? auth : "");
      RequestHead h = must_parse(req);
      CHECK(h.method == "CONNECT");
      CHECK(h.target == text);
      CHECK(find_header(h.headers, "host") == text);
      CHECK(find_header(h.headers, "proxy-authorization") == (with_auth ? auth : ""));
      CHECK(h.headers.size() == (with_auth ? 2u : 1u));
      up::Target back;
      REQUIRE(up::parse_authority(h.target, 0, back));
      CHECK(back.to_string() == t.to_string());
      std::string user, pass;
      if (with_auth) {
        REQUIRE(parse_basic_credentials(find_header(h.headers, "proxy-authorization"), user, pass));
        CHECK(user == "u");
        CHECK(pass == "p");
      }
    }
  }
}
