// Microbenchmarks for src/proto: what one client handshake costs in the parsers alone.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "uringproxy/http.h"
#include "uringproxy/socks5.h"
#include "uringproxy/vless.h"

namespace {

std::vector<uint8_t> socks5_handshake() {
  std::vector<uint8_t> b = {5, 2, 0, 2};
  b.insert(b.end(), {1, 13});
  for (char c : std::string("alice.us-east")) b.push_back(static_cast<uint8_t>(c));
  b.push_back(16);
  for (char c : std::string("correct-horse-42")) b.push_back(static_cast<uint8_t>(c));
  std::string host = "www.example.com";
  b.insert(b.end(), {5, 1, 0, 3, static_cast<uint8_t>(host.size())});
  for (char c : host) b.push_back(static_cast<uint8_t>(c));
  b.insert(b.end(), {0x01, 0xbb});
  return b;
}

// A Firefox-like proxied GET of about 500 bytes.
const std::string browser_request =
    "GET http://www.example.com/articles/2024/proxy-benchmarks.html?ref=home HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Referer: http://www.example.com/\r\n"
    "Cookie: session=4f1c2d9e8a7b6c5d; theme=dark\r\n"
    "Proxy-Authorization: Basic YWxpY2UudXMtZWFzdDpjb3JyZWN0LWhvcnNlLTQy\r\n"
    "Proxy-Connection: keep-alive\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "\r\n";

std::string chunked_body_64k() {
  std::string body;
  std::string chunk(4096, 'x');
  for (int i = 0; i < 16; ++i) {
    body += "1000;i=" + std::to_string(i) + "\r\n";
    body += chunk;
    body += "\r\n";
  }
  body += "0\r\nX-Checksum: abc\r\n\r\n";
  return body;
}

void BM_Socks5Handshake(benchmark::State& state) {
  const std::vector<uint8_t> in = socks5_handshake();
  up::socks5::Request req;
  req.target.host.reserve(255);  // as a worker reusing its connection slots would
  for (auto _ : state) {
    std::span<const uint8_t> rest(in);
    size_t consumed = 0;
    up::socks5::Greeting g;
    up::socks5::parse_greeting(rest, g, consumed);
    rest = rest.subspan(consumed);
    up::socks5::Credentials cred;
    up::socks5::parse_userpass(rest, cred, consumed);
    rest = rest.subspan(consumed);
    up::socks5::Reply reply;
    benchmark::DoNotOptimize(up::socks5::parse_request(rest, req, consumed, reply));
    benchmark::DoNotOptimize(cred);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_Socks5Handshake);

void BM_HttpRequestHead(benchmark::State& state) {
  up::http::RequestHead head;
  head.headers.reserve(32);
  int status = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(up::http::parse_request_head(
        {browser_request.data(), browser_request.size()}, head, status));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * browser_request.size()));
}
BENCHMARK(BM_HttpRequestHead);

void BM_RewriteForwardHead(benchmark::State& state) {
  up::http::RequestHead head;
  int status = 0;
  up::http::parse_request_head({browser_request.data(), browser_request.size()}, head, status);
  up::Target target;
  std::string origin;
  up::http::parse_absolute_uri(head.target, target, origin);
  for (auto _ : state) {
    std::string out = up::http::rewrite_forward_head(head, origin, target);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_RewriteForwardHead);

void BM_BodyTrackerChunked64k(benchmark::State& state) {
  const std::string body = chunked_body_64k();
  for (auto _ : state) {
    up::http::BodyTracker tracker(up::http::BodyFraming{up::http::BodyKind::chunked, 0});
    size_t consumed = 0;
    benchmark::DoNotOptimize(tracker.feed({body.data(), body.size()}, consumed));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_BodyTrackerChunked64k);

// A v2ray client's VLESS header to a domain, followed by the first bytes of its payload.
std::vector<uint8_t> vless_request() {
  up::vless::Request req;
  up::vless::parse_uuid("b831381d-6324-4d53-ad4f-8cda48b30811", req.id);
  up::set_host("www.example.com", req.target);
  req.target.port = 443;
  std::vector<uint8_t> b(up::vless::max_request_size);
  b.resize(up::vless::encode_request(req, b.data()));
  for (char c : std::string("\x16\x03\x01\x02\x00")) b.push_back(static_cast<uint8_t>(c));
  return b;
}

void BM_VlessRequest(benchmark::State& state) {
  const std::vector<uint8_t> in = vless_request();
  up::vless::Request req;
  req.target.host.reserve(255);
  for (auto _ : state) {
    size_t consumed = 0;
    up::vless::Error error;
    benchmark::DoNotOptimize(up::vless::parse_request(in, req, consumed, error));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_VlessRequest);

// 64 KiB of UDP datagrams of 1200 bytes (a QUIC-sized packet), split as a relay would.
void BM_VlessDatagrams(benchmark::State& state) {
  std::vector<uint8_t> stream;
  std::vector<uint8_t> packet(1200, 0x5a);
  while (stream.size() + 2 + packet.size() <= 65536) {
    size_t at = stream.size();
    stream.resize(at + 2 + packet.size());
    up::vless::encode_datagram(packet, stream.data() + at);
  }
  for (auto _ : state) {
    std::span<const uint8_t> rest(stream);
    std::span<const uint8_t> payload;
    size_t consumed = 0;
    while (up::vless::parse_datagram(rest, payload, consumed) == up::vless::Parse::done) {
      benchmark::DoNotOptimize(payload.data());
      rest = rest.subspan(consumed);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_VlessDatagrams);

}  // namespace
