#pragma once
// Asynchronous name resolution on a worker's ring: c-ares does the protocol, the ring does the
// waiting (c-ares' sockets are polled with IORING_OP_POLL_ADD), answers are cached by TTL, and
// concurrent lookups of one name share a query. /etc/hosts is honoured; dns.servers overrides
// /etc/resolv.conf.
#include <ares.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "upstream/dns_cache.h"
#include "uringproxy/config.h"

namespace up {

class DnsWaiter {
 public:
  // status: ARES_SUCCESS, ARES_ENOTFOUND, ARES_ETIMEOUT, ...; addrs empty unless success.
  virtual void on_resolved(int status, const std::vector<ResolvedAddress>& addrs) = 0;

 protected:
  ~DnsWaiter() = default;
};

// What the resolver needs from the event loop: poll a c-ares socket once, or stop polling it.
class PollHooks {
 public:
  virtual void dns_poll(int fd, unsigned events) = 0;
  virtual void dns_unpoll(int fd) = 0;

 protected:
  ~PollHooks() = default;
};

class DnsResolver {
 public:
  DnsResolver(PollHooks& hooks, const std::vector<SocketAddress>& servers, uint32_t max_ttl_s);
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  bool ok() const { return channel_ != nullptr; }
  const std::string& error() const { return error_; }

  // Calls w->on_resolved, possibly before returning (cache hit, /etc/hosts).
  void resolve(const std::string& name, DnsWaiter* w, uint64_t now_ms);
  void cancel(const std::string& name, DnsWaiter* w);

  // From the loop: a polled socket is ready (revents), or time passed (c-ares timeouts).
  void on_poll(int fd, unsigned revents);
  void on_tick(uint64_t now_ms);

 private:
  struct Query {
    DnsResolver* self;
    std::string name;
    uint64_t started_ms;
  };
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, ares_addrinfo* res);
  void rearm(int fd);

  PollHooks& hooks_;
  ares_channel channel_ = nullptr;
  std::string error_;
  uint32_t max_ttl_s_;
  DnsCache cache_;
  std::unordered_map<std::string, std::vector<DnsWaiter*>> waiting_;
  std::unordered_map<int, unsigned> wanted_;  // fd -> POLLIN|POLLOUT c-ares wants
};

}  // namespace up
