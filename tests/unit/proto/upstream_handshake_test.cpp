// Tests for src/proto/upstream_handshake.cpp: the bytes sent, every reply split at every byte,
// tunnel bytes behind the last reply, and each failure with what the client is answered
// (docs/wire.md, "Through an upstream").
#include "uringproxy/upstream_handshake.h"

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

using up::Target;
using HS = up::UpstreamHandshake;
using Fault = HS::Failure::Fault;

namespace {

Target target(const char* authority) {
  Target t;
  REQUIRE(up::parse_authority(authority, 0, t));
  return t;
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s += static_cast<char>(c);
  return s;
}

// A SOCKS5 reply: REP, ATYP 1, 0.0.0.0:0.
std::string socks_reply(int rep) { return bytes({5, rep, 0, 1, 0, 0, 0, 0, 0, 0}); }

struct Outcome {
  HS::Step step = HS::Step::send;
  std::vector<std::string> sent;
  std::string tunnel;     // leftover(), plus pieces that arrived after done
  bool early = false;     // a reply's piece arrived while the machine was not receiving
  HS::Failure failure;
};

// Plays an upstream: replies[i] answers our i-th message, delivered in the pieces `cut` makes
// of it. Stops when the machine ends or the script runs out.
using Cut = std::function<std::vector<std::string>(size_t index, const std::string& reply)>;

Outcome play(HS hs, const std::vector<std::string>& replies, const Cut& cut) {
  Outcome o;
  size_t i = 0;
  for (;;) {
    if (hs.step() == HS::Step::send) {
      REQUIRE(!hs.output().empty());
      o.sent.emplace_back(hs.output());
      hs.sent();
      REQUIRE(hs.step() == HS::Step::recv);
      continue;
    }
    if (hs.step() != HS::Step::recv || i == replies.size()) break;
    std::vector<std::string> pieces = cut(i, replies[i]);
    ++i;
    for (const std::string& p : pieces) {
      if (hs.step() == HS::Step::recv) {
        hs.received({p.data(), p.size()});
      } else if (hs.step() == HS::Step::done) {
        o.tunnel += p;  // the caller's, once done
      } else {
        o.early = true;
      }
    }
  }
  o.step = hs.step();
  if (o.step == HS::Step::done) o.tunnel.insert(0, hs.leftover());
  if (o.step == HS::Step::failed) o.failure = hs.failure();
  return o;
}

std::vector<std::string> whole(size_t, const std::string& r) { return {r}; }

Outcome play_whole(HS hs, const std::vector<std::string>& replies) {
  return play(std::move(hs), replies, whole);
}

// The same outcome for the script delivered whole, one byte at a time, and with each reply cut
// in two at every byte.
void check_every_split(const HS& hs, const std::vector<std::string>& replies) {
  Outcome ref = play_whole(hs, replies);
  Outcome bytewise = play(hs, replies, [](size_t, const std::string& r) {
    std::vector<std::string> v;
    for (char c : r) v.emplace_back(1, c);
    return v;
  });
  auto same = [&](const Outcome& o) {
    CHECK(!o.early);
    CHECK(o.step == ref.step);
    CHECK(o.sent == ref.sent);
    CHECK(o.tunnel == ref.tunnel);
    CHECK(o.failure.fault == ref.failure.fault);
    CHECK(o.failure.socks_reply == ref.failure.socks_reply);
    CHECK(o.failure.http_status == ref.failure.http_status);
    CHECK(o.failure.why == ref.failure.why);
  };
  same(bytewise);
  for (size_t which = 0; which < replies.size(); ++which) {
    for (size_t k = 1; k < replies[which].size(); ++k) {
      CAPTURE(which);
      CAPTURE(k);
      same(play(hs, replies, [&](size_t i, const std::string& r) {
        if (i != which) return std::vector<std::string>{r};
        return std::vector<std::string>{r.substr(0, k), r.substr(k)};
      }));
    }
  }
}

void check_failure(const Outcome& o, Fault fault, int socks_reply, int http_status,
                   const char* why_part) {
  REQUIRE(o.step == HS::Step::failed);
  CHECK(o.failure.fault == fault);
  CHECK(o.failure.socks_reply == socks_reply);
  CHECK(o.failure.http_status == http_status);
  CHECK_MESSAGE(o.failure.why.find(why_part) != std::string::npos, o.failure.why);
}

// example.com:443, parsed once (a file-scope Target would be parsed outside any test).
const Target& example_target() {
  static const Target t = target("example.com:443");
  return t;
}

HS socks(bool creds = false, const Target* t = &example_target()) {
  return creds ? HS(HS::Protocol::socks5, "u", "pw", t) : HS(HS::Protocol::socks5, "", "", t);
}
HS http(bool creds = false) {
  return creds ? HS(HS::Protocol::http, "u", "pw", &example_target())
               : HS(HS::Protocol::http, "", "", &example_target());
}

const std::string greeting_none = bytes({5, 1, 0});
const std::string greeting_both = bytes({5, 2, 0, 2});
const std::string auth_u_pw = bytes({1, 1, 'u', 2, 'p', 'w'});
const std::string request_example =
    bytes({5, 1, 0, 3, 11}) + "example.com" + bytes({1, 0xbb});

}  // namespace

TEST_CASE("socks5 without credentials: greeting, CONNECT, tunnel bytes handed back") {
  std::vector<std::string> replies = {bytes({5, 0}), socks_reply(0) + "tunnel"};
  Outcome o = play_whole(socks(), replies);
  CHECK(o.step == HS::Step::done);
  CHECK(o.sent == std::vector<std::string>{greeting_none, request_example});
  CHECK(o.tunnel == "tunnel");
  check_every_split(socks(), replies);
}

TEST_CASE("socks5 with credentials: RFC 1929 when the upstream picks 0x02") {
  // A domain BND.ADDR in the reply, as some servers send.
  std::string reply = bytes({5, 0, 0, 3, 4}) + "host" + bytes({0, 80});
  std::vector<std::string> replies = {bytes({5, 2}), bytes({1, 0}), reply};
  Outcome o = play_whole(socks(true), replies);
  CHECK(o.step == HS::Step::done);
  CHECK(o.sent == std::vector<std::string>{greeting_both, auth_u_pw, request_example});
  CHECK(o.tunnel.empty());
  check_every_split(socks(true), replies);
  // With tunnel bytes behind an IPv6 reply.
  std::string v6 = bytes({5, 0, 0, 4}) + std::string(16, '\0') + bytes({0, 1}) + "xyz";
  replies.back() = v6;
  CHECK(play_whole(socks(true), replies).tunnel == "xyz");
  check_every_split(socks(true), replies);
}

TEST_CASE("socks5 with credentials, upstream picks no authentication: no RFC 1929") {
  Outcome o = play_whole(socks(true), {bytes({5, 0}), socks_reply(0)});
  CHECK(o.step == HS::Step::done);
  CHECK(o.sent == std::vector<std::string>{greeting_both, request_example});
}

TEST_CASE("socks5 targets: IPv4 and IPv6 literals go as addresses") {
  Target v4 = target("10.1.2.3:80");
  CHECK(play_whole(socks(false, &v4), {}).sent[0] == greeting_none);
  Outcome o = play_whole(socks(false, &v4), {bytes({5, 0})});
  CHECK(o.sent[1] == bytes({5, 1, 0, 1, 10, 1, 2, 3, 0, 80}));
  Target v6 = target("[::1]:443");
  o = play_whole(socks(false, &v6), {bytes({5, 0})});
  CHECK(o.sent[1] == bytes({5, 1, 0, 4}) + std::string(15, '\0') + bytes({1, 1, 0xbb}));
}

TEST_CASE("socks5 UDP ASSOCIATE: the request names where we send from; bound() is the relay") {
  Target any;  // as the dialer builds it: 0.0.0.0, port 0
  REQUIRE(up::set_host("0.0.0.0", any));
  HS hs(HS::Protocol::socks5, "", "", &any, HS::Request::udp_associate);
  std::string reply = bytes({5, 0, 0, 1, 127, 0, 0, 9, 0x1f, 0x90});
  std::vector<std::string> replies = {bytes({5, 0}), reply};
  Outcome o = play_whole(hs, replies);
  CHECK(o.step == HS::Step::done);
  CHECK(o.sent == std::vector<std::string>{greeting_none, bytes({5, 3, 0, 1, 0, 0, 0, 0, 0, 0})});
  check_every_split(hs, replies);
  hs.sent();
  hs.received({"\x05\x00", 2});
  hs.sent();
  REQUIRE(hs.received({reply.data(), reply.size()}) == HS::Step::done);
  CHECK(hs.bound().kind == Target::Kind::ipv4);
  CHECK(hs.bound().host == "127.0.0.9");
  CHECK(hs.bound().port == 8080);
  HS refused(HS::Protocol::socks5, "", "", &any, HS::Request::udp_associate);
  check_failure(play_whole(refused, {bytes({5, 0}), socks_reply(7)}), Fault::target, 1, 502,
                "answered our UDP ASSOCIATE with SOCKS5 reply 0x07");
}

TEST_CASE("socks5 probe (no target): done after the authentication, no CONNECT") {
  std::vector<std::string> replies = {bytes({5, 2}), bytes({1, 0})};
  Outcome o = play_whole(socks(true, nullptr), replies);
  CHECK(o.step == HS::Step::done);
  CHECK(o.sent == std::vector<std::string>{greeting_both, auth_u_pw});
  check_every_split(socks(true, nullptr), replies);
  o = play_whole(socks(false, nullptr), {bytes({5, 0})});
  CHECK(o.step == HS::Step::done);
  CHECK(o.sent.size() == 1);
  // The probe judges the greeting and the authentication as the dialer does.
  check_failure(play_whole(socks(true, nullptr), {bytes({5, 2}), bytes({5, 0})}),
                Fault::upstream, 1, 502, "malformed RFC 1929 reply");
  check_failure(play_whole(socks(true, nullptr), {bytes({5, 2, 0})}), Fault::upstream, 1, 502,
                "more than a SOCKS5 method choice");
}

TEST_CASE("socks5 greeting failures mark the upstream down") {
  check_failure(play_whole(socks(), {bytes({4, 0})}), Fault::upstream, 1, 502,
                "not a SOCKS5 server");
  check_failure(play_whole(socks(), {"H"}), Fault::upstream, 1, 502, "not a SOCKS5 server");
  check_failure(play_whole(socks(true), {bytes({5, 0xff})}), Fault::upstream, 1, 502,
                "refused every authentication method");
  // 0x02 though we offered only 0x00 (no username set).
  check_failure(play_whole(socks(), {bytes({5, 2})}), Fault::upstream, 1, 502,
                "method 0x02, which we did not offer");
  check_failure(play_whole(socks(), {bytes({5, 1})}), Fault::upstream, 1, 502,
                "method 0x01");
  // Bytes before we sent our next message: not a SOCKS5 server we can trust.
  check_failure(play_whole(socks(), {bytes({5, 0, 5})}), Fault::upstream, 1, 502,
                "more than a SOCKS5 method choice");
}

TEST_CASE("RFC 1929 failures mark the upstream down") {
  check_failure(play_whole(socks(true), {bytes({5, 2}), bytes({1, 1})}), Fault::upstream, 1, 502,
                "refused our username/password");
  // Some servers answer the sub-negotiation with version 5: malformed.
  check_failure(play_whole(socks(true), {bytes({5, 2}), bytes({5, 0})}), Fault::upstream, 1, 502,
                "malformed RFC 1929 reply (version 5, not 1)");
  check_failure(play_whole(socks(true), {bytes({5, 2}), bytes({1, 0, 5})}), Fault::upstream, 1,
                502, "more than an RFC 1929 reply");
}

TEST_CASE("socks5 CONNECT replies: REP passed on as docs/wire.md maps it") {
  struct Row {
    int rep, socks, http;
  } rows[] = {{1, 1, 502}, {2, 2, 403}, {3, 3, 502}, {4, 4, 502}, {5, 5, 502},
              {6, 6, 504}, {7, 1, 502}, {8, 1, 502}, {0x42, 1, 502}};
  for (const Row& r : rows) {
    CAPTURE(r.rep);
    std::vector<std::string> replies = {bytes({5, 0}), socks_reply(r.rep)};
    check_failure(play_whole(socks(), replies), Fault::target, r.socks, r.http,
                  "answered our CONNECT with SOCKS5 reply");
    check_every_split(socks(), replies);
  }
}

TEST_CASE("socks5 malformed CONNECT reply") {
  check_failure(play_whole(socks(), {bytes({5, 0}), bytes({4, 0, 0, 1})}), Fault::upstream, 1,
                502, "malformed SOCKS5 reply");
  check_failure(play_whole(socks(), {bytes({5, 0}), bytes({5, 0, 0, 9})}), Fault::upstream, 1,
                502, "malformed SOCKS5 reply");
}

TEST_CASE("closed or reset: before our CONNECT the upstream's fault, after it the target's") {
  HS hs = socks(true);
  hs.sent();
  REQUIRE(hs.closed(false) == HS::Step::failed);
  check_failure(play_whole(hs, {}), Fault::upstream, 1, 502,
                "closed the connection before answering our greeting");
  hs = socks(true);
  hs.sent();
  hs.received({"\x05\x02", 2});
  hs.sent();
  hs.received({"\x01", 1});  // half a reply, then the reset
  hs.closed(true);
  check_failure(play_whole(hs, {}), Fault::upstream, 1, 502,
                "reset the connection before answering our authentication");
  hs = socks();
  hs.sent();
  hs.received({"\x05\x00", 2});
  hs.sent();
  hs.closed(true);
  check_failure(play_whole(hs, {}), Fault::after_request, 5, 502,
                "reset the connection before answering our CONNECT");
  hs = http();
  hs.sent();
  hs.received({"HTTP/1.1 2", 10});
  hs.closed(false);
  check_failure(play_whole(hs, {}), Fault::after_request, 5, 502, "closed the connection");
}

TEST_CASE("steps out of turn change nothing") {
  HS hs = socks();
  CHECK(hs.received({"\x05\x00", 2}) == HS::Step::send);  // nothing sent yet
  CHECK(hs.closed(false) == HS::Step::send);
  hs.sent();
  hs.sent();
  CHECK(hs.step() == HS::Step::recv);
  CHECK(hs.output().empty());
  CHECK(hs.received({}) == HS::Step::recv);
}

TEST_CASE("credentials SOCKS5 cannot carry fail at once") {
  HS hs(HS::Protocol::socks5, std::string(256, 'u'), "pw", &example_target());
  CHECK(hs.step() == HS::Step::failed);
  CHECK(hs.failure().fault == Fault::upstream);
  CHECK(hs.failure().why.find("255") != std::string::npos);
  // HTTP has no such limit.
  CHECK(HS(HS::Protocol::http, std::string(256, 'u'), "pw", &example_target()).step() == HS::Step::send);
}

TEST_CASE("http CONNECT: request bytes, 2xx with tunnel bytes, every split") {
  Outcome o = play_whole(http(true), {"HTTP/1.1 200 Connection established\r\n\r\nhello"});
  CHECK(o.step == HS::Step::done);
  CHECK(o.sent == std::vector<std::string>{
                      "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                      "Proxy-Authorization: Basic dTpwdw==\r\n\r\n"});
  CHECK(o.tunnel == "hello");
  CHECK(play_whole(http(), {}).sent[0] ==
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  check_every_split(http(true), {"HTTP/1.1 200 Connection established\r\n"
                                 "Proxy-Agent: x\r\n\r\nhello"});
  check_every_split(http(), {"HTTP/1.0 204 OK\r\n\r\n"});
  check_every_split(http(), {"HTTP/1.1 503 Service Unavailable\r\n\r\n"});
}

TEST_CASE("http CONNECT answers as docs/wire.md maps them") {
  struct Row {
    int status, socks, http;
    Fault fault;
  } rows[] = {{403, 2, 502, Fault::target}, {504, 6, 504, Fault::target},
              {500, 5, 502, Fault::target}, {502, 5, 502, Fault::target},
              {503, 5, 502, Fault::target}, {404, 1, 502, Fault::target},
              {400, 1, 502, Fault::target}, {101, 1, 502, Fault::target},
              {301, 1, 502, Fault::target}, {407, 1, 502, Fault::upstream}};
  for (const Row& r : rows) {
    CAPTURE(r.status);
    std::string reply = "HTTP/1.1 " + std::to_string(r.status) + " X\r\nContent-Length: 0\r\n\r\n";
    check_failure(play_whole(http(), {reply}), r.fault, r.socks, r.http,
                  std::to_string(r.status).c_str());
  }
}

TEST_CASE("http malformed, conflicting Content-Length, oversize head") {
  check_failure(play_whole(http(), {"SSH-2.0-OpenSSH\r\n\r\n"}), Fault::upstream, 1, 502,
                "malformed HTTP response");
  check_failure(play_whole(http(), {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
                                    "Content-Length: 2\r\n\r\n"}),
                Fault::upstream, 1, 502, "malformed HTTP response");
  // A head that ends within max_reply counts, whatever follows it; one that does not, fails.
  std::string head = "HTTP/1.1 200 OK\r\nX: ";
  std::string fits = head + std::string(HS::max_reply - head.size() - 4, 'a') + "\r\n\r\n";
  REQUIRE(fits.size() == HS::max_reply);
  Outcome o = play_whole(http(), {fits + std::string(20000, 't')});
  CHECK(o.step == HS::Step::done);
  CHECK(o.tunnel.size() == 20000);
  std::string too_long = head + std::string(HS::max_reply - head.size() - 3, 'a') + "\r\n\r\n";
  check_failure(play_whole(http(), {too_long}), Fault::upstream, 1, 502,
                "longer than 8192 bytes");
  // Trickled: fails as soon as max_reply bytes are in without the end of the head.
  HS hs = http();
  hs.sent();
  for (size_t i = 0; i < HS::max_reply - 1; ++i) {
    REQUIRE(hs.received({too_long.data() + i, 1}) == HS::Step::recv);
  }
  CHECK(hs.received({too_long.data() + HS::max_reply - 1, 1}) == HS::Step::failed);
}
