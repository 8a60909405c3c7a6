#pragma once
// uringload: shared types and small helpers. Every scenario fills a Result that main prints
// as one human line and (with --json) one JSON object.
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace uload {

enum class ProxyKind { direct, socks5, http, vless };

struct ProxySpec {
  ProxyKind kind = ProxyKind::direct;
  std::string user, pass;  // empty user: no auth
  uint8_t uuid[16] = {};    // vless: the user's id
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string text;  // as given, password masked
};

struct Options {
  std::string scenario;         // bulk, cps, latency, idle, udp, serve
  ProxySpec proxy;
  sockaddr_storage target{};    // where the proxy (or direct client) connects
  socklen_t target_len = 0;
  std::string target_text;      // host:port
  bool target_listen = false;   // run the target servers inside this process
  int target_threads = 2;
  int threads = 1;              // client threads (cps)
  int streams = 1;              // bulk
  bool download = false;        // bulk direction
  double duration = 5.0;        // seconds
  uint64_t bytes = 0;           // bulk: stop after this many bytes in total (0: duration only)
  int concurrency = 64;         // cps: connections in flight
  int tunnels = 1;              // latency: tunnels; idle: tunnels to hold
  double settle = 2.0;          // idle: seconds to wait before reading RSS
  double timeout = 5.0;         // per connect/handshake/round trip
  size_t buf = 256 * 1024;      // bulk buffer
  int msg = 64;                 // cps/latency message size; udp payload size
  int window = 16;              // udp: datagrams in flight per association
  int interval_us = 0;          // latency, 1 tunnel: pause between round trips (idle tunnel)
  bool tls = false;             // TLS to the proxy (or to the target with --direct)
  bool tls_resume = false;      // offer the newest session on every new connection
  std::string tls_sni;          // server name sent (none when empty)
  std::vector<int> proxy_pids;
  std::vector<int> parent_pids;  // sum over each and its children
  bool json = false;
  std::string label;            // free text echoed into the output (e.g. the peer name)
};

// Key/value results in insertion order; numbers or strings.
struct Result {
  struct Field {
    std::string key;
    std::string value;  // already formatted
    bool is_string;
  };
  std::vector<Field> fields;
  std::string human;
  void num(const std::string& k, double v, int prec = 3);
  void integer(const std::string& k, long long v);
  void str(const std::string& k, const std::string& v);
  std::string json() const;
};

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline uint64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// "127.0.0.1:80", "[::1]:80" -> sockaddr. Numeric only: this tool never resolves names.
bool parse_hostport(const std::string& s, sockaddr_storage& out, socklen_t& len);
std::string format_addr(const sockaddr_storage& a);

// Error counters shared by the scenarios (relaxed atomics are enough for reporting).
struct Errors {
  uint64_t refused = 0, reset = 0, timeout = 0, proxy_reply = 0, other = 0;
  uint64_t tls = 0;  // TLS handshake or record failures (reported only when some happened)
  uint64_t total() const { return refused + reset + timeout + proxy_reply + other + tls; }
  void add(const Errors& o) {
    refused += o.refused; reset += o.reset; timeout += o.timeout;
    proxy_reply += o.proxy_reply; other += o.other; tls += o.tls;
  }
  void count_errno(int e);
  void report(Result& r) const;
};

// Raises RLIMIT_NOFILE to the hard limit.
void raise_nofile();

}  // namespace uload
