// uringload: load generator and target server for uringproxy and its peers.
// Command line, watchdog, and dispatch to the scenarios.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "common.h"
#include "proc_stats.h"
#include "scenarios.h"
#include "sink_server.h"

using namespace uload;

namespace {

const char* kUsage = R"(usage: uringload SCENARIO [options]

Scenarios:
  bulk      N streams moving bytes as fast as possible; Gbit/s and proxy CPU-s/GB
  cps       connections per second: connect, handshake (+auth), 64-byte echo, target closes
            first, client closes; conn/s and proxy CPU-us/conn
  latency   ping-pong round trips on K tunnels; p50/p90/p99/p99.9 us, round trips/s and
            proxy CPU-us per round trip
  idle      open and hold T tunnels; proxy RSS (and PSS) growth per tunnel
  udp       datagrams through SOCKS5 UDP ASSOCIATE (or --direct) to a UDP echo target:
            --tunnels associations, each keeping --window datagrams of --msg payload bytes
            in flight; echoed datagrams/s and proxy CPU-us per datagram relayed
  http      HTTP/1.1 keep-alive GETs, one in flight on each of --concurrency connections over
            --threads loops (as wrk does): absolute-URI with Proxy-Authorization through
            --proxy http://user:pass@IP:PORT (forwarding, not CONNECT), origin-form with
            --direct; the target answers 200 with a --msg byte body. requests/s, p50/p90/p99
            and proxy CPU-us per request
  serve     only run the target servers (needs --target-listen) for --duration seconds

Where to go:
  --proxy URL             socks5://[user:pass@]IP:PORT or http://[user:pass@]IP:PORT (CONNECT)
                          or vless://UUID@IP:PORT (VLESS version 0, TCP; bulk and cps only)
  --direct                no proxy: connect straight to the target (the baseline; default)
  --target IP:PORT        the address the proxy is asked to connect to (default: --target-listen)
  --target-listen IP:PORT run the target servers in this process (epoll, SO_REUSEPORT;
                          udp: a UDP echo target on the same address)
  --target-threads N      target threads (default 2)

TLS (bulk and cps; OpenSSL, no certificate check, TLS 1.3 offers AES-128-GCM only):
  --tls                   TLS to the proxy (to the target with --direct): an HTTPS proxy,
                          SOCKS5 over TLS, VLESS over TLS, or a TLS-terminating relay
  --tls-resume            cps: offer a stored session (ticket), each once, on every new
                          connection; full handshakes before the clock fill the store
                          (the result counts how many handshakes resumed)
  --tls-sni NAME          server name to send (default none)

Scenario knobs:
  --duration S            measured seconds (default 5; idle: bound on opening, default 60)
  --timeout S             per connect / handshake / reply (default 5)
  --streams N             bulk streams (default 1)
  --download              bulk: the target sends (default: upload, the target discards)
  --bytes N[KMG]          bulk: stop after N bytes in total
  --buf N[KMG]            bulk buffer (default 256K)
  --concurrency N         cps: connections in flight (default 64)
  --threads N             cps: client epoll threads (default 1)
  --tunnels N             latency (default 1) / idle (default 5000) tunnels; udp:
                          associations (default 1)
  --window N              udp: datagrams in flight per association (default 16)
  --settle S              idle: wait before reading the proxy's memory (default 2)
  --msg N                 cps/latency message bytes, udp payload bytes (default 64)
  --interval-us N         latency with 1 tunnel: pause N us between round trips, so the
                          proxy goes idle in between (an idle tunnel, not a busy one)

Measuring the proxy:
  --proxy-pid PID               repeatable; utime+stime (and RSS for idle) from /proc
  --proxy-pids-from-parent PID  PID and all its descendants, re-enumerated at each sample
  --json                        also print one JSON object per run
  --label TEXT                  echoed into the output
)";

[[noreturn]] void die(const std::string& m) {
  fprintf(stderr, "uringload: %s\n", m.c_str());
  exit(2);
}

uint64_t parse_size(const std::string& s) {
  char* end = nullptr;
  double v = strtod(s.c_str(), &end);
  if (end == s.c_str() || v < 0) die("bad size: " + s);
  switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    case 0: break;
    default: die("bad size: " + s);
  }
  return uint64_t(v);
}

std::string pct_decode(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%' && i + 2 < s.size()) {
      o += char(strtol(s.substr(i + 1, 2).c_str(), nullptr, 16));
      i += 2;
    } else {
      o += s[i];
    }
  }
  return o;
}

bool parse_uuid(const std::string& s, uint8_t out[16]) {
  std::string hex;
  for (char c : s)
    if (c != '-') hex += c;
  if (hex.size() != 32) return false;
  for (int i = 0; i < 16; i++) {
    char* end = nullptr;
    std::string b = hex.substr(size_t(i) * 2, 2);
    long v = strtol(b.c_str(), &end, 16);
    if (*end || !isxdigit(uint8_t(b[0])) || !isxdigit(uint8_t(b[1]))) return false;
    out[i] = uint8_t(v);
  }
  return true;
}

void parse_proxy(const std::string& url, ProxySpec& p) {
  auto sep = url.find("://");
  if (sep == std::string::npos) die("--proxy wants scheme://[user:pass@]IP:PORT");
  std::string scheme = url.substr(0, sep), rest = url.substr(sep + 3);
  if (scheme == "socks5" || scheme == "socks5h") p.kind = ProxyKind::socks5;
  else if (scheme == "http") p.kind = ProxyKind::http;
  else if (scheme == "vless") p.kind = ProxyKind::vless;
  else die("unknown proxy scheme: " + scheme);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  std::string hostport = rest;
  auto at = rest.rfind('@');
  std::string shown = scheme + "://";
  if (p.kind == ProxyKind::vless) {
    if (at == std::string::npos || !parse_uuid(rest.substr(0, at), p.uuid))
      die("--proxy vless://UUID@IP:PORT wants a uuid (8-4-4-4-12 hex digits)");
    hostport = rest.substr(at + 1);
    shown += "***@";
  } else if (at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    hostport = rest.substr(at + 1);
    auto c = cred.find(':');
    p.user = pct_decode(cred.substr(0, c));
    p.pass = c == std::string::npos ? "" : pct_decode(cred.substr(c + 1));
    if (p.user.size() > 255 || p.pass.size() > 255) die("user or password longer than 255");
    shown += p.user + ":***@";
  }
  if (!parse_hostport(hostport, p.addr, p.addr_len)) die("bad proxy address: " + hostport);
  p.text = shown + hostport;
}

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  Options o;
  o.scenario = argv[1];
  if (o.scenario != "bulk" && o.scenario != "cps" && o.scenario != "latency" &&
      o.scenario != "idle" && o.scenario != "udp" && o.scenario != "serve" &&
      o.scenario != "http")
    die("unknown scenario: " + o.scenario + " (bulk, cps, latency, idle, udp, http, serve)");
  o.proxy.text = "direct";
  bool duration_set = false, tunnels_set = false;
  std::string listen_text;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    auto ival = [&]() -> long {
      std::string v = val();
      char* end = nullptr;
      long r = strtol(v.c_str(), &end, 10);
      if (*end || v.empty()) die("bad number for " + a + ": " + v);
      return r;
    };
    auto dval = [&]() -> double {
      std::string v = val();
      char* end = nullptr;
      double r = strtod(v.c_str(), &end);
      if (*end || v.empty() || r < 0) die("bad number for " + a + ": " + v);
      return r;
    };
    if (a == "--proxy") parse_proxy(val(), o.proxy);
    else if (a == "--direct") { o.proxy = ProxySpec{}; o.proxy.text = "direct"; }
    else if (a == "--tls") o.tls = true;
    else if (a == "--tls-resume") o.tls_resume = true;
    else if (a == "--tls-sni") o.tls_sni = val();
    else if (a == "--target") {
      o.target_text = val();
      if (!parse_hostport(o.target_text, o.target, o.target_len)) die("bad --target");
    } else if (a == "--target-listen") { listen_text = val(); o.target_listen = true; }
    else if (a == "--target-threads") o.target_threads = int(ival());
    else if (a == "--duration") { o.duration = dval(); duration_set = true; }
    else if (a == "--timeout") o.timeout = dval();
    else if (a == "--streams") o.streams = int(ival());
    else if (a == "--download") o.download = true;
    else if (a == "--upload") o.download = false;
    else if (a == "--bytes") o.bytes = parse_size(val());
    else if (a == "--buf") o.buf = size_t(parse_size(val()));
    else if (a == "--concurrency") o.concurrency = int(ival());
    else if (a == "--threads") o.threads = int(ival());
    else if (a == "--tunnels") { o.tunnels = int(ival()); tunnels_set = true; }
    else if (a == "--settle") o.settle = dval();
    else if (a == "--msg") o.msg = int(ival());
    else if (a == "--window") o.window = int(ival());
    else if (a == "--interval-us") o.interval_us = int(ival());
    else if (a == "--proxy-pid") o.proxy_pids.push_back(int(ival()));
    else if (a == "--proxy-pids-from-parent") o.parent_pids.push_back(int(ival()));
    else if (a == "--json") o.json = true;
    else if (a == "--label") o.label = val();
    else die("unknown option: " + a + " (see --help)");
  }
  if (o.streams < 1 || o.streams > 1024) die("--streams must be 1..1024");
  if (o.concurrency < 1 || o.concurrency > 8192) die("--concurrency must be 1..8192");
  if (o.threads < 1 || o.threads > 64) die("--threads must be 1..64");
  if (o.tunnels < 1 || o.tunnels > 100000) die("--tunnels must be 1..100000");
  if (o.msg < 1 || o.msg > 65536) die("--msg must be 1..65536");
  if (o.window < 1 || o.window > 4096) die("--window must be 1..4096");
  if (o.scenario == "udp" && o.msg > 65000) die("udp: --msg must be at most 65000");
  if (o.scenario == "udp" && o.proxy.kind != ProxyKind::direct &&
      o.proxy.kind != ProxyKind::socks5)
    die("udp goes through socks5:// (UDP ASSOCIATE) or --direct");
  if (o.scenario == "http" && o.proxy.kind != ProxyKind::direct &&
      o.proxy.kind != ProxyKind::http)
    die("http goes through http:// (a forward proxy) or --direct");
  if (o.interval_us < 0 || o.interval_us > 1000000) die("--interval-us must be 0..1000000");
  if (o.buf < 1024 || o.buf > (64u << 20)) die("--buf must be 1K..64M");
  if (o.duration <= 0 && o.scenario != "serve") die("--duration must be > 0");
  if (o.tls_resume && !o.tls) die("--tls-resume needs --tls");
  if ((o.tls || o.proxy.kind == ProxyKind::vless) && o.scenario != "bulk" && o.scenario != "cps")
    die("--tls and vless:// are for bulk and cps");
  if (o.scenario == "idle") {
    if (!tunnels_set) o.tunnels = 5000;
    if (!duration_set) o.duration = 60;
  }
  if (o.scenario == "serve" && !duration_set) o.duration = 3600;

  raise_nofile();
  signal(SIGPIPE, SIG_IGN);

  sockaddr_storage listen_addr{};
  socklen_t listen_len = 0;
  if (o.target_listen && !parse_hostport(listen_text, listen_addr, listen_len))
    die("bad --target-listen: " + listen_text);
  if (o.target_len == 0) {
    if (!o.target_listen) die("give --target IP:PORT or --target-listen IP:PORT");
    o.target = listen_addr;
    o.target_len = listen_len;
    o.target_text = listen_text;
  }
  if (o.scenario == "serve" && !o.target_listen) die("serve needs --target-listen");

  // Hard time bound on the whole run: the measured window plus handshakes and drains.
  double bound = o.duration + 4 * o.timeout + o.settle + 30;
  if (o.scenario == "idle" || o.scenario == "bulk" || o.scenario == "latency" ||
      o.scenario == "udp")
    bound += o.timeout * (o.scenario == "idle" ? 0 : o.streams + 2 * o.tunnels);
  alarm(unsigned(bound) + 1);
  signal(SIGALRM, [](int) {
    const char m[] = "uringload: hard time bound reached, aborting\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(3);
  });

  SinkServer sink;
  if (o.target_listen && o.scenario != "udp") {  // udp runs its own (UDP) target
    std::string err;
    if (!sink.start(listen_addr, listen_len, o.target_threads, o.msg, err)) die(err);
  }
  if (o.scenario == "serve") {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "uringload: serving targets on %s for %.0f s\n", listen_text.c_str(),
            o.duration);
    double end = now_s() + o.duration;
    while (!g_stop && now_s() < end) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return 0;
  }

  ProcWatch pw(o.proxy_pids, o.parent_pids);
  Result r;
  if (o.scenario == "bulk") r = run_bulk(o, pw);
  else if (o.scenario == "cps") r = run_cps(o, pw);
  else if (o.scenario == "latency") r = run_latency(o, pw);
  else if (o.scenario == "udp") r = run_udp(o, pw);
  else if (o.scenario == "http") r = run_http(o, pw);
  else r = run_idle(o, pw);
  sink.stop();
  if (!o.label.empty()) printf("[%s] ", o.label.c_str());
  printf("%s\n", r.human.c_str());
  if (o.json) printf("%s\n", r.json().c_str());
  fflush(stdout);
  return 0;
}
