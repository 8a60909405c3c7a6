// HTTP/1.x proxy framing (RFC 9110/9112). Heads are parsed line by line as views into the
// caller's buffer; a call on a longer prefix of the same stream simply parses again, so the
// parser keeps no state and the same function serves the server, the fuzzer and the bench.
//
// Line endings are strict CRLF everywhere (heads and chunked bodies): a bare LF or bare CR is
// a 400. Tolerating bare LF is allowed by RFC 9112 2.2, but a proxy that passes bodies through
// unchanged must not read framing differently from the origin behind it.
#include "uringproxy/http.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

#include "proto/base64.h"

namespace up::http {
namespace {

// tchar, RFC 9110 5.6.2.
constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<uint8_t>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> tchar = make_tchar();

bool is_tchar(char c) { return tchar[static_cast<uint8_t>(c)]; }
bool is_ows(char c) { return c == ' ' || c == '\t'; }
// field-vchar / obs-text; SP and HTAB are allowed inside values separately.
bool is_ctl(char c) {
  auto u = static_cast<uint8_t>(c);
  return u < 0x20 || u == 0x7f;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

// Calls f(element) for each non-empty, OWS-trimmed element of a comma-separated list
// (RFC 9110 5.6.1: empty elements are ignored). Stops early if f returns false.
template <class F>
bool for_each_element(std::string_view list, F&& f) {
  while (true) {
    size_t comma = list.find(',');
    std::string_view el = trim_ows(list.substr(0, comma));
    if (!el.empty() && !f(el)) return false;
    if (comma == std::string_view::npos) return true;
    list.remove_prefix(comma + 1);
  }
}

enum class Line : uint8_t { ok, incomplete, bad };

// Finds the CRLF ending the line that starts at `pos` in `in`; `end` is the index of its CR.
// Refuses a bare CR or LF anywhere in the line, so callers never see one.
Line next_line(std::string_view in, size_t pos, size_t& end) {
  const char* begin = in.data() + pos;
  size_t left = in.size() - pos;
  // Two memchr passes (vectorised in libc) beat one byte loop testing for both characters.
  const void* cr = std::memchr(begin, '\r', left);
  size_t len = cr == nullptr ? left : static_cast<size_t>(static_cast<const char*>(cr) - begin);
  if (std::memchr(begin, '\n', len) != nullptr) return Line::bad;
  if (cr == nullptr || len + 1 >= left) return Line::incomplete;
  if (begin[len + 1] != '\n') return Line::bad;
  end = pos + len;
  return Line::ok;
}

bool parse_version(std::string_view v, int& minor) {
  if (v == "HTTP/1.1") {
    minor = 1;
    return true;
  }
  if (v == "HTTP/1.0") {
    minor = 0;
    return true;
  }
  return false;
}

// "name:" OWS value OWS. No whitespace before the colon (RFC 9112 5.1), no obs-fold, no
// control characters other than HTAB in the value.
bool parse_field_line(std::string_view line, Header& h) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view name = line.substr(0, colon);
  if (!is_token(name)) return false;
  std::string_view value = line.substr(colon + 1);
  for (char c : value) {
    if (is_ctl(c) && c != '\t') return false;
  }
  h.name = name;
  h.value = trim_ows(value);
  return true;
}

struct HeadResult {
  Parse parse;
  int status;  // 400 or 431 on error
};

// Shared by requests and responses: the start line is handed to `start`, then field lines are
// collected until the blank line. `in` is already cut to max_head_bytes.
template <class StartLine>
HeadResult parse_head(std::string_view in, bool truncated, std::vector<Header>& headers,
                      size_t& head_len, StartLine&& start) {
  auto incomplete = [&]() -> HeadResult {
    return truncated ? HeadResult{Parse::error, 431} : HeadResult{Parse::need_more, 0};
  };
  headers.clear();
  size_t pos = 0;
  size_t end = 0;
  // RFC 9112 2.2: ignore empty lines before the start line (some clients send a CRLF after
  // a POST body).
  while (true) {
    Line l = next_line(in, pos, end);
    if (l == Line::bad) return {Parse::error, 400};
    if (l == Line::incomplete) {
      // Reject a start line as soon as it can no longer be valid, without waiting for CRLF.
      std::string_view partial = in.substr(pos);
      if (!partial.empty() && partial.back() == '\r') partial.remove_suffix(1);
      if (!start(partial, true)) return {Parse::error, 400};
      return incomplete();
    }
    if (end != pos) break;
    pos = end + 2;
  }
  if (!start(in.substr(pos, end - pos), false)) return {Parse::error, 400};
  pos = end + 2;
  while (true) {
    Line l = next_line(in, pos, end);
    if (l == Line::bad) return {Parse::error, 400};
    if (l == Line::incomplete) return incomplete();
    if (end == pos) {
      head_len = end + 2;
      return {Parse::done, 0};
    }
    std::string_view line = in.substr(pos, end - pos);
    if (is_ows(line.front())) return {Parse::error, 400};  // obs-fold or leading whitespace
    Header h;
    if (!parse_field_line(line, h)) return {Parse::error, 400};
    if (headers.size() >= max_headers) return {Parse::error, 431};
    headers.push_back(h);
    pos = end + 2;
  }
}

// A prefix of "HTTP/1.x" that could still become a valid version.
bool version_prefix_ok(std::string_view v) {
  std::string_view full = "HTTP/1.";
  size_t n = std::min(v.size(), full.size());
  if (v.substr(0, n) != full.substr(0, n)) return false;
  if (v.size() > full.size()) {
    return (v[7] == '0' || v[7] == '1') && v.size() == 8;
  }
  return true;
}

// method SP request-target SP HTTP-version, single spaces. `partial` means the line has not
// ended yet: then only refuse what no continuation could repair.
bool parse_request_line(std::string_view line, bool partial, RequestHead& out) {
  size_t sp1 = line.find(' ');
  std::string_view method = line.substr(0, sp1);
  for (char c : method) {
    if (!is_tchar(c)) return false;
  }
  if (sp1 == std::string_view::npos) return partial;
  if (method.empty()) return false;
  std::string_view rest = line.substr(sp1 + 1);
  size_t sp2 = rest.find(' ');
  std::string_view target = rest.substr(0, sp2);
  for (char c : target) {
    if (is_ctl(c)) return false;
  }
  if (sp2 == std::string_view::npos) return partial;
  if (target.empty()) return false;
  std::string_view version = rest.substr(sp2 + 1);
  if (partial) return version_prefix_ok(version);
  if (!parse_version(version, out.version_minor)) return false;
  out.method = method;
  out.target = target;
  return true;
}

// HTTP-version SP 3DIGIT SP reason; the SP before an empty reason may be missing.
bool parse_status_line(std::string_view line, bool partial, ResponseHead& out) {
  std::string_view version = line.substr(0, 8);
  if (partial && line.size() <= 8) return version_prefix_ok(version);
  if (partial) return version_prefix_ok(version) && line[8] == ' ';
  if (line.size() < 12 || line[8] != ' ') return false;
  if (!parse_version(version, out.version_minor)) return false;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return false;
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100 || status > 599) return false;
  std::string_view reason;
  if (line.size() > 12) {
    if (line[12] != ' ') return false;
    reason = line.substr(13);
    for (char c : reason) {
      if (is_ctl(c) && c != '\t') return false;
    }
  }
  out.status = status;
  out.reason = reason;
  return true;
}

// Content-Length: every value (and every element of a list value) the same decimal number.
// Returns false on a malformed or conflicting value; `present` says whether there was any.
bool content_length(const std::vector<Header>& headers, bool& present, uint64_t& length) {
  present = false;
  bool ok = true;
  for (const Header& h : headers) {
    if (!iequals(h.name, "content-length")) continue;
    bool any = false;
    for_each_element(h.value, [&](std::string_view el) {
      uint64_t v = 0;
      auto [p, ec] = std::from_chars(el.data(), el.data() + el.size(), v);
      // from_chars takes no sign or whitespace; still refuse anything it left over.
      if (ec != std::errc() || p != el.data() + el.size() || el.front() == '-' ||
          el.front() == '+') {
        ok = false;
        return false;
      }
      if (present && v != length) {
        ok = false;
        return false;
      }
      present = true;
      any = true;
      length = v;
      return true;
    });
    if (!ok || !any) return false;
  }
  return true;
}

enum class Coding : uint8_t { absent, chunked_final, other };

// Transfer-Encoding: chunked must be the last coding and appear once.
Coding transfer_coding(const std::vector<Header>& headers) {
  bool present = false;
  bool chunked_last = false;
  bool chunked_misplaced = false;
  bool bad = false;
  for (const Header& h : headers) {
    if (!iequals(h.name, "transfer-encoding")) continue;
    present = true;
    bool any = false;
    for_each_element(h.value, [&](std::string_view el) {
      any = true;
      // Transfer codings may carry parameters (";q=..."); only the name matters here.
      std::string_view name = trim_ows(el.substr(0, el.find(';')));
      if (!is_token(name)) bad = true;
      bool is_chunked = iequals(name, "chunked");
      // chunked at most once and only as the final coding
      if (chunked_last) chunked_misplaced = true;
      chunked_last = is_chunked;
      return true;
    });
    if (!any) bad = true;
  }
  if (!present) return Coding::absent;
  if (bad || chunked_misplaced || !chunked_last) return Coding::other;
  return Coding::chunked_final;
}

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view names[] = {
      "connection", "keep-alive", "proxy-connection", "proxy-authorization",
      "proxy-authenticate", "te", "trailer", "upgrade"};
  for (std::string_view n : names) {
    if (iequals(name, n)) return true;
  }
  return false;
}

// Headers a Connection token must never remove: the body passes through unchanged, so its
// framing headers have to reach the other side as we read them ("Connection: content-length"
// would otherwise smuggle a body), and Host is ours to set.
bool is_protected(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
         iequals(name, "host");
}

// The tokens of every Connection header, gathered once per rewrite instead of once per
// header; past `max` tokens it falls back to scanning the headers.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const std::vector<Header>& headers) : headers_(headers) {
    for (const Header& h : headers) {
      if (!iequals(h.name, "connection")) continue;
      for_each_element(h.value, [&](std::string_view el) {
        if (n_ == max) {
          overflow_ = true;
          return false;
        }
        tokens_[n_++] = el;
        return true;
      });
    }
  }
  bool lists(std::string_view name) const {
    if (is_protected(name)) return false;
    if (overflow_) return header_has_token(headers_, "connection", name);
    for (size_t i = 0; i < n_; ++i) {
      if (iequals(tokens_[i], name)) return true;
    }
    return false;
  }

 private:
  static constexpr size_t max = 16;
  const std::vector<Header>& headers_;
  std::string_view tokens_[max];
  size_t n_ = 0;
  bool overflow_ = false;
};

// The single Content-Length a rewritten head carries. RFC 9112 6.3 allows a recipient to
// take repeated identical values ("5, 5", or the header twice) as one; the next hop gets that
// one, so it cannot read the framing differently. Invalid values are left as they are: the
// caller refuses such a message.
struct LengthFold {
  explicit LengthFold(const std::vector<Header>& headers) {
    bool present = false;
    fold = content_length(headers, present, length) && present;
  }
  // Writes the folded header in place of the first Content-Length and drops the others;
  // false for any other header.
  bool take(std::string& s, const Header& h) {
    if (!fold || !iequals(h.name, "content-length")) return false;
    if (!written) {
      s.append("Content-Length: ");
      s.append(std::to_string(length));
      s.append("\r\n");
      written = true;
    }
    return true;
  }
  bool fold = false;
  bool written = false;
  uint64_t length = 0;
};

void append_header(std::string& s, const Header& h) {
  s.append(h.name);
  s.append(": ");
  s.append(h.value);
  s.append("\r\n");
}

void append_host(std::string& s, const Target& target) {
  s.append("Host: ");
  if (target.kind == Target::Kind::ipv6) {
    s += '[';
    s += target.host;
    s += ']';
  } else {
    s += target.host;
  }
  if (target.port != 80) {
    s += ':';
    s += std::to_string(target.port);
  }
  s.append("\r\n");
}

}  // namespace

Parse parse_request_head(std::span<const char> in, RequestHead& out, int& error_status) {
  error_status = 0;
  bool truncated = in.size() >= max_head_bytes;
  std::string_view view(in.data(), std::min(in.size(), max_head_bytes));
  size_t head_len = 0;
  HeadResult r = parse_head(view, truncated, out.headers, head_len,
                            [&](std::string_view line, bool partial) {
                              return parse_request_line(line, partial, out);
                            });
  if (r.parse == Parse::done) {
    // RFC 9112 3.2: more than one Host is a 400 (and would let a client pick which one an
    // ACL sees). Two Proxy-Authorization headers likewise leave it open who is asking.
    int hosts = 0;
    int credentials = 0;
    for (const Header& h : out.headers) {
      hosts += iequals(h.name, "host") ? 1 : 0;
      credentials += iequals(h.name, "proxy-authorization") ? 1 : 0;
    }
    if (hosts > 1 || credentials > 1) {
      error_status = 400;
      return Parse::error;
    }
    out.head_len = head_len;
  }
  error_status = r.status;
  return r.parse;
}

Parse parse_response_head(std::span<const char> in, ResponseHead& out) {
  bool truncated = in.size() >= max_head_bytes;
  std::string_view view(in.data(), std::min(in.size(), max_head_bytes));
  size_t head_len = 0;
  HeadResult r = parse_head(view, truncated, out.headers, head_len,
                            [&](std::string_view line, bool partial) {
                              return parse_status_line(line, partial, out);
                            });
  if (r.parse != Parse::done) return r.parse;
  // RFC 9112 6.3 item 5: without Transfer-Encoding, a malformed Content-Length or differing
  // values leave the body's end unknown; a proxy must answer 502 rather than guess.
  bool has_length = false;
  uint64_t length = 0;
  if (transfer_coding(out.headers) == Coding::absent &&
      !content_length(out.headers, has_length, length)) {
    return Parse::error;
  }
  out.head_len = head_len;
  return Parse::done;
}

std::string_view find_header(const std::vector<Header>& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

bool header_has_token(const std::vector<Header>& headers, std::string_view name,
                      std::string_view token) {
  for (const Header& h : headers) {
    if (!iequals(h.name, name)) continue;
    bool found = false;
    for_each_element(h.value, [&](std::string_view el) {
      found = iequals(el, token);
      return !found;
    });
    if (found) return true;
  }
  return false;
}

bool request_body_framing(const RequestHead& head, BodyFraming& out) {
  out = BodyFraming{};
  bool has_length = false;
  uint64_t length = 0;
  bool length_ok = content_length(head.headers, has_length, length);
  Coding coding = transfer_coding(head.headers);
  if (coding != Coding::absent) {
    // RFC 9112 6.1: TE in HTTP/1.0 is faulty framing; TE with CL is a smuggling attempt.
    if (coding != Coding::chunked_final || has_length || !length_ok ||
        head.version_minor == 0) {
      return false;
    }
    out.kind = BodyKind::chunked;
    return true;
  }
  if (!length_ok) return false;
  if (has_length) {
    out.kind = BodyKind::length;
    out.length = length;
  }
  return true;
}

BodyFraming response_body_framing(const ResponseHead& head, std::string_view request_method) {
  BodyFraming f;
  if (iequals(request_method, "HEAD") || (head.status >= 100 && head.status < 200) ||
      head.status == 204 || head.status == 304) {
    return f;
  }
  // A 2xx to CONNECT starts a tunnel, not a body (RFC 9112 6.3 item 2).
  if (iequals(request_method, "CONNECT") && head.status >= 200 && head.status < 300) return f;
  Coding coding = transfer_coding(head.headers);
  if (coding == Coding::chunked_final && head.version_minor == 1) {
    f.kind = BodyKind::chunked;  // overrides any Content-Length (RFC 9112 6.3 item 3)
    return f;
  }
  if (coding != Coding::absent) {
    f.kind = BodyKind::until_close;
    return f;
  }
  bool has_length = false;
  uint64_t length = 0;
  // A bad or conflicting Content-Length cannot be trusted (parse_response_head refuses one;
  // a head built by hand may still carry it): read until close.
  if (content_length(head.headers, has_length, length) && has_length) {
    f.kind = BodyKind::length;
    f.length = length;
    return f;
  }
  f.kind = BodyKind::until_close;
  return f;
}

BodyTracker::BodyTracker(BodyFraming framing) {
  switch (framing.kind) {
    case BodyKind::none: state_ = State::done; break;
    case BodyKind::length:
      state_ = framing.length == 0 ? State::done : State::length;
      remaining_ = framing.length;
      break;
    case BodyKind::chunked: state_ = State::chunk_size; break;
    case BodyKind::until_close: state_ = State::until_close; break;
  }
}

Parse BodyTracker::feed(std::span<const char> in, size_t& consumed) {
  size_t i = 0;
  const size_t n = in.size();
  auto finish = [&](Parse p) {
    consumed = i;
    return p;
  };
  while (i < n) {
    char c = in[i];
    switch (state_) {
      case State::done: return finish(Parse::done);
      case State::until_close: i = n; return finish(Parse::need_more);
      case State::length:
      case State::chunk_data: {
        uint64_t take = std::min<uint64_t>(remaining_, n - i);
        i += static_cast<size_t>(take);
        remaining_ -= take;
        if (remaining_ == 0) {
          state_ = state_ == State::length ? State::done : State::chunk_data_cr;
        }
        continue;
      }
      case State::chunk_size: {
        int d = -1;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        if (d >= 0) {
          if (size_digits_ >= 16) return finish(Parse::error);
          remaining_ = remaining_ << 4 | static_cast<uint64_t>(d);
          ++size_digits_;
        } else if (size_digits_ == 0) {
          return finish(Parse::error);
        } else if (c == ';') {
          state_ = State::chunk_ext;
        } else if (c == '\r') {
          state_ = State::chunk_size_lf;
        } else {
          return finish(Parse::error);
        }
        break;
      }
      case State::chunk_ext:
        // Extensions are skipped; only the line ending matters for framing.
        if (c == '\r') state_ = State::chunk_size_lf;
        else if (c == '\n' || (is_ctl(c) && c != '\t')) return finish(Parse::error);
        break;
      case State::chunk_size_lf:
        if (c != '\n') return finish(Parse::error);
        size_digits_ = 0;
        state_ = remaining_ == 0 ? State::trailer_start : State::chunk_data;
        break;
      case State::chunk_data_cr:
        if (c != '\r') return finish(Parse::error);
        state_ = State::chunk_data_lf;
        break;
      case State::chunk_data_lf:
        if (c != '\n') return finish(Parse::error);
        state_ = State::chunk_size;
        break;
      case State::trailer_start:
        if (c == '\r') {
          state_ = State::final_lf;
        } else if (is_tchar(c)) {
          state_ = State::trailer_line;  // trailer fields pass through as they are
        } else {
          return finish(Parse::error);  // obs-fold, bare LF or junk
        }
        break;
      case State::trailer_line:
        if (c == '\r') state_ = State::trailer_lf;
        else if (c == '\n' || (is_ctl(c) && c != '\t')) return finish(Parse::error);
        break;
      case State::trailer_lf:
        if (c != '\n') return finish(Parse::error);
        state_ = State::trailer_start;
        break;
      case State::final_lf:
        if (c != '\n') return finish(Parse::error);
        state_ = State::done;
        ++i;
        return finish(Parse::done);
    }
    ++i;
  }
  return finish(state_ == State::done ? Parse::done : Parse::need_more);
}

bool parse_absolute_uri(std::string_view uri, Target& target, std::string& origin_form) {
  constexpr std::string_view scheme = "http://";
  if (uri.size() < scheme.size() || !iequals(uri.substr(0, scheme.size()), scheme)) {
    return false;
  }
  uri.remove_prefix(scheme.size());
  size_t auth_end = uri.find_first_of("/?#");
  std::string_view authority = uri.substr(0, auth_end);
  if (authority.find('@') != std::string_view::npos) return false;  // userinfo
  Target t;
  if (!parse_authority(authority, 80, t)) return false;
  std::string_view rest = auth_end == std::string_view::npos ? "" : uri.substr(auth_end);
  rest = rest.substr(0, rest.find('#'));
  for (char c : rest) {
    if (is_ctl(c) || c == ' ') return false;  // it goes into a request line as it is
  }
  origin_form.clear();
  if (rest.empty() || rest.front() != '/') origin_form += '/';
  origin_form.append(rest);
  target = std::move(t);
  return true;
}

void rewrite_forward_head(const RequestHead& head, std::string_view origin_form,
                          const Target& target, std::string& s) {
  s.clear();
  s.reserve(head.head_len + 64);
  s.append(head.method);
  s += ' ';
  s.append(origin_form);
  s.append(head.version_minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  // RFC 9112 3.2.2: a proxy replaces Host with the authority of the absolute-form target, so
  // the origin serves the name the route and the ACLs were decided on. Without a Host, it goes
  // first, where origin servers and humans look for it.
  bool host_done = std::none_of(head.headers.begin(), head.headers.end(),
                                [](const Header& h) { return iequals(h.name, "host"); });
  if (host_done) append_host(s, target);
  ConnectionTokens connection(head.headers);
  LengthFold length(head.headers);
  for (const Header& h : head.headers) {
    if (iequals(h.name, "host")) {
      if (!host_done) append_host(s, target);
      host_done = true;
      continue;
    }
    if (length.take(s, h)) continue;
    if (is_hop_by_hop(h.name) || connection.lists(h.name)) continue;
    append_header(s, h);
  }
  s.append("\r\n");
}

void rewrite_response_head(const ResponseHead& head, bool close_after, std::string& s) {
  s.clear();
  s.reserve(head.head_len + 32);
  s.append(head.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  char status[8];
  s.append(status, std::to_chars(status, status + sizeof status, head.status).ptr);
  s += ' ';
  s.append(head.reason);
  s.append("\r\n");
  ConnectionTokens connection(head.headers);
  // RFC 9112 6.1: Transfer-Encoding overrides Content-Length, and a proxy removes the
  // Content-Length before forwarding such a message.
  bool coded = transfer_coding(head.headers) != Coding::absent;
  LengthFold length(head.headers);
  for (const Header& h : head.headers) {
    if (coded && iequals(h.name, "content-length")) continue;
    if (length.take(s, h)) continue;
    if (is_hop_by_hop(h.name) || connection.lists(h.name)) continue;
    append_header(s, h);
  }
  if (close_after) s.append("Connection: close\r\n");
  s.append("\r\n");
}

bool wants_close(int version_minor, const std::vector<Header>& headers) {
  // Proxy-Connection is what old clients send to a proxy instead of Connection.
  auto has = [&](std::string_view token) {
    return header_has_token(headers, "connection", token) ||
           header_has_token(headers, "proxy-connection", token);
  };
  if (has("close")) return true;
  if (version_minor == 0) return !has("keep-alive");
  return false;
}

bool parse_basic_credentials(std::string_view value, std::string& user, std::string& pass) {
  value = trim_ows(value);
  constexpr std::string_view scheme = "basic";
  if (value.size() <= scheme.size() || !iequals(value.substr(0, scheme.size()), scheme) ||
      !is_ows(value[scheme.size()])) {
    return false;
  }
  std::string_view token = trim_ows(value.substr(scheme.size()));
  if (token.empty()) return false;
  std::string decoded;
  if (!base64::decode(token, decoded)) return false;
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  // RFC 7617: no control characters; a NUL would also cut a C-string password short.
  for (char c : decoded) {
    if (is_ctl(c)) return false;
  }
  user.assign(decoded, 0, colon);
  pass.assign(decoded, colon + 1);
  return true;
}

std::string basic_credentials(std::string_view user, std::string_view pass) {
  std::string plain;
  plain.reserve(user.size() + 1 + pass.size());
  plain.append(user);
  plain += ':';
  plain.append(pass);
  return "Basic " + base64::encode(plain);
}

std::string_view status_response(int status) {
#define UP_CANNED(code, text)                                                               \
  "HTTP/1.1 " #code " " text "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
  static constexpr std::string_view r400 = UP_CANNED(400, "Bad Request");
  static constexpr std::string_view r403 = UP_CANNED(403, "Forbidden");
  static constexpr std::string_view r407 =
      "HTTP/1.1 407 Proxy Authentication Required\r\n"
      "Proxy-Authenticate: Basic realm=\"uringproxy\"\r\n"
      "Content-Length: 0\r\nConnection: close\r\n\r\n";
  static constexpr std::string_view r429 = UP_CANNED(429, "Too Many Requests");
  static constexpr std::string_view r431 = UP_CANNED(431, "Request Header Fields Too Large");
  static constexpr std::string_view r500 = UP_CANNED(500, "Internal Server Error");
  static constexpr std::string_view r502 = UP_CANNED(502, "Bad Gateway");
  static constexpr std::string_view r503 = UP_CANNED(503, "Service Unavailable");
  static constexpr std::string_view r504 = UP_CANNED(504, "Gateway Timeout");
#undef UP_CANNED
  switch (status) {
    case 200: return "HTTP/1.1 200 Connection established\r\n\r\n";
    case 400: return r400;
    case 403: return r403;
    case 407: return r407;
    case 429: return r429;
    case 431: return r431;
    case 502: return r502;
    case 503: return r503;
    case 504: return r504;
    default: return r500;  // anything else is our own failure
  }
}

std::string_view quota_exceeded_response() {
  return "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
         "Content-Length: 15\r\nConnection: close\r\n\r\nquota exceeded\n";
}

std::string encode_connect(const Target& target, std::string_view proxy_authorization) {
  std::string authority = target.to_string();
  std::string s;
  s.reserve(64 + 2 * authority.size() + proxy_authorization.size());
  s.append("CONNECT ");
  s.append(authority);
  s.append(" HTTP/1.1\r\nHost: ");
  s.append(authority);
  s.append("\r\n");
  if (!proxy_authorization.empty()) {
    s.append("Proxy-Authorization: ");
    s.append(proxy_authorization);
    s.append("\r\n");
  }
  s.append("\r\n");
  return s;
}

}  // namespace up::http
