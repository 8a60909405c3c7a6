#pragma once
// HTTP/1.x proxy framing (RFC 9110/9112): pure parsers and rewriters, no I/O.
// Used for CONNECT, absolute-URI forwarding with keep-alive, and upstream http dialers.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "uringproxy/target.h"

namespace up::http {

enum class Parse : uint8_t { need_more, done, error };

constexpr size_t max_head_bytes = 16 * 1024;  // request/response line + headers
constexpr size_t max_headers = 100;

struct Header {
  std::string_view name;   // views into the input buffer
  std::string_view value;  // leading/trailing whitespace trimmed
};

struct RequestHead {
  std::string_view method;
  std::string_view target;  // as sent: authority (CONNECT), absolute URI, or origin form
  int version_minor = 1;    // HTTP/1.0 or HTTP/1.1 only
  std::vector<Header> headers;
  size_t head_len = 0;      // bytes up to and including the blank line
};

// error_status on error: 400 malformed (also bare LF handling aside, obs-fold, bad version,
// more than one Host or Proxy-Authorization), 431 head larger than max_head_bytes or more than
// max_headers headers.
// need_more is returned only while in.size() < max_head_bytes.
Parse parse_request_head(std::span<const char> in, RequestHead& out, int& error_status);

struct ResponseHead {
  int status = 0;
  int version_minor = 1;
  std::string_view reason;
  std::vector<Header> headers;
  size_t head_len = 0;
};
// Error also when, without Transfer-Encoding, Content-Length is malformed or its values differ
// (a proxy answers 502: the body's end is unknown).
Parse parse_response_head(std::span<const char> in, ResponseHead& out);

// Case-insensitive lookup of the first header with that name; empty view if absent.
std::string_view find_header(const std::vector<Header>& headers, std::string_view name);
// True if a comma-separated header list (e.g. Connection) contains `token`, case-insensitive.
bool header_has_token(const std::vector<Header>& headers, std::string_view name,
                      std::string_view token);

// Message body framing, RFC 9112 section 6.
enum class BodyKind : uint8_t { none, length, chunked, until_close };
struct BodyFraming {
  BodyKind kind = BodyKind::none;
  uint64_t length = 0;  // for BodyKind::length
};
// Requests: Transfer-Encoding chunked (final) -> chunked; Content-Length -> length; neither ->
// none. Both present, several differing Content-Lengths, a bad Content-Length, or a
// Transfer-Encoding other than chunked -> false (answer 400).
bool request_body_framing(const RequestHead& head, BodyFraming& out);
// Responses: HEAD requests, 1xx, 204, 304 -> none; chunked; Content-Length; else until_close.
BodyFraming response_body_framing(const ResponseHead& head, std::string_view request_method);

// Follows a body as its bytes pass through, without copying or changing them.
class BodyTracker {
 public:
  BodyTracker() = default;
  explicit BodyTracker(BodyFraming framing);
  // Looks at the next bytes of the stream; sets `consumed` to how many belong to this body
  // (including chunk sizes, extensions, CRLFs and trailers). Returns done once the body is
  // complete (consumed then stops at its end), need_more while it continues, error on bad
  // chunk syntax. until_close bodies never finish.
  Parse feed(std::span<const char> in, size_t& consumed);
  bool done() const { return state_ == State::done; }

 private:
  enum class State : uint8_t { length, chunk_size, chunk_ext, chunk_size_lf, chunk_data,
                               chunk_data_cr, chunk_data_lf, trailer_start, trailer_line,
                               trailer_lf, final_lf, until_close, done };
  State state_ = State::done;
  uint64_t remaining_ = 0;
  uint8_t size_digits_ = 0;
};

// Absolute-form request target "http://host[:port]/path?q" -> target (default port 80) and
// origin form ("/path?q", "/" when empty). Only the http scheme is accepted. Userinfo is
// refused. The fragment is dropped.
bool parse_absolute_uri(std::string_view uri, Target& target, std::string& origin_form);

// The request head to send to an origin server: request line in origin form, headers minus
// hop-by-hop ones (Connection and the tokens it lists, Keep-Alive, Proxy-Connection,
// Proxy-Authorization, Proxy-Authenticate, TE, Trailer, Upgrade), Transfer-Encoding and
// Content-Length kept since the body passes through unchanged (repeated identical
// Content-Length values folded into one header); Host added when absent. Written over `out`,
// whose capacity a keep-alive connection reuses from one request to the next.
void rewrite_forward_head(const RequestHead& head, std::string_view origin_form,
                          const Target& target, std::string& out);
// The response head to send back to the client: hop-by-hop headers removed the same way,
// Content-Length folded into one header (or dropped beside Transfer-Encoding), and
// "Connection: close" added when close_after is set. Written over `out`.
void rewrite_response_head(const ResponseHead& head, bool close_after, std::string& out);

inline std::string rewrite_forward_head(const RequestHead& head, std::string_view origin_form,
                                        const Target& target) {
  std::string out;
  rewrite_forward_head(head, origin_form, target, out);
  return out;
}
inline std::string rewrite_response_head(const ResponseHead& head, bool close_after) {
  std::string out;
  rewrite_response_head(head, close_after, out);
  return out;
}

// Whether the peer asked to close after this message: HTTP/1.0 without keep-alive, or
// "Connection: close".
bool wants_close(int version_minor, const std::vector<Header>& headers);

// "Basic base64(user:pass)" -> user, pass. False if not Basic or malformed.
bool parse_basic_credentials(std::string_view value, std::string& user, std::string& pass);
// Client side: "Basic base64(user:pass)".
std::string basic_credentials(std::string_view user, std::string_view pass);

// A complete canned response with "Connection: close" and an empty body for 400, 403, 407
// (with Proxy-Authenticate: Basic realm="uringproxy"), 429, 431, 500, 502, 503, 504;
// "HTTP/1.1 200 Connection established\r\n\r\n" for 200.
std::string_view status_response(int status);
// 429 with the plain-text reason "quota exceeded": the user's byte quota for the period is spent.
std::string_view quota_exceeded_response();

// Client side (upstream http dialer, load tool): "CONNECT host:port HTTP/1.1" with Host and
// optionally Proxy-Authorization.
std::string encode_connect(const Target& target, std::string_view proxy_authorization);

}  // namespace up::http
