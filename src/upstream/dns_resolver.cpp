#include "upstream/dns_resolver.h"

#include <netdb.h>
#include <poll.h>
#include <string.h>

#include <algorithm>

#include "core/clock.h"

namespace up {

namespace {
// Per worker. An entry is a name and its addresses (about 300 bytes for one IPv4 and one
// IPv6 address): a few MB at most, and far more names than a worker's tunnels use at once.
constexpr size_t max_cached_names = 8192;
}  // namespace

DnsResolver::DnsResolver(PollHooks& hooks, const std::vector<SocketAddress>& servers,
                         uint32_t max_ttl_s)
    : hooks_(hooks), max_ttl_s_(max_ttl_s), cache_(max_cached_names) {
  ares_options opts;
  memset(&opts, 0, sizeof opts);
  opts.sock_state_cb = &DnsResolver::on_sock_state;
  opts.sock_state_cb_data = this;
  opts.timeout = 2000;  // per try; a dial's own deadline bounds the whole wait anyway
  opts.tries = 2;
  char lookups[] = "fb";  // /etc/hosts first, then DNS
  opts.lookups = lookups;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
  int r = ares_init_options(&channel_, &opts, mask);
  if (r != ARES_SUCCESS) {
    error_ = std::string("c-ares init: ") + ares_strerror(r);
    channel_ = nullptr;
    return;
  }
  if (!servers.empty()) {
    std::string csv;
    for (const auto& s : servers) {
      if (!csv.empty()) csv += ',';
      csv += s.text;
    }
    r = ares_set_servers_ports_csv(channel_, csv.c_str());
    if (r != ARES_SUCCESS) {
      error_ = "dns.servers: " + std::string(ares_strerror(r));
      ares_destroy(channel_);
      channel_ = nullptr;
    }
  }
}

DnsResolver::~DnsResolver() {
  if (channel_) ares_destroy(channel_);
}

void DnsResolver::resolve(const std::string& name, DnsWaiter* w, uint64_t now_ms) {
  if (const auto* addrs = cache_.find(name, now_ms)) {
    w->on_resolved(ARES_SUCCESS, *addrs);
    return;
  }
  auto& list = waiting_[name];
  list.push_back(w);
  if (list.size() > 1) return;  // a query for this name is already out
  ares_addrinfo_hints hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // Sorting (RFC 6724) would connect() probe sockets on the worker; the dialer tries each
  // address in turn anyway.
  hints.ai_flags = ARES_AI_NOSORT;
  ares_getaddrinfo(channel_, name.c_str(), nullptr, &hints, &DnsResolver::on_answer,
                   new Query{this, name, now_ms});
}

void DnsResolver::cancel(const std::string& name, DnsWaiter* w) {
  auto it = waiting_.find(name);
  if (it == waiting_.end()) return;
  auto& v = it->second;
  v.erase(std::remove(v.begin(), v.end(), w), v.end());
  // The query itself runs on; its answer fills the cache for the next client.
}

void DnsResolver::on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
  Query* q = static_cast<Query*>(arg);
  DnsResolver* self = q->self;
  std::vector<ResolvedAddress> addrs;
  int ttl = static_cast<int>(self->max_ttl_s_);
  if (status == ARES_SUCCESS && res) {
    for (ares_addrinfo_node* n = res->nodes; n; n = n->ai_next) {
      if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
      ResolvedAddress a;
      memset(&a.addr, 0, sizeof a.addr);
      memcpy(&a.addr, n->ai_addr, n->ai_addrlen);
      a.len = n->ai_addrlen;
      addrs.push_back(a);
      if (n->ai_ttl >= 0) ttl = std::min(ttl, n->ai_ttl);
    }
    if (addrs.empty()) status = ARES_ENODATA;
  }
  if (res) ares_freeaddrinfo(res);
  if (status == ARES_SUCCESS && ttl > 0) {
    uint64_t now = monotonic_ms();
    self->cache_.put(q->name, addrs, now + static_cast<uint64_t>(ttl) * 1000, now);
  }
  std::vector<DnsWaiter*> waiters;
  if (auto it = self->waiting_.find(q->name); it != self->waiting_.end()) {
    waiters.swap(it->second);
    self->waiting_.erase(it);
  }
  // ARES_EDESTRUCTION: the channel is going away with the worker; nobody is left to tell.
  if (status != ARES_EDESTRUCTION)
    for (DnsWaiter* w : waiters) w->on_resolved(status, addrs);
  delete q;
}

void DnsResolver::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<DnsResolver*>(data);
  unsigned events = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
  if (events == 0) {
    if (self->wanted_.erase(fd)) self->hooks_.dns_unpoll(fd);
    return;
  }
  bool armed = self->wanted_.count(fd) != 0;
  self->wanted_[fd] = events;
  if (!armed) self->hooks_.dns_poll(fd, events);
}

void DnsResolver::on_poll(int fd, unsigned revents) {
  auto it = wanted_.find(fd);
  if (it == wanted_.end()) return;  // c-ares closed it meanwhile
  ares_socket_t rfd = (revents & (POLLIN | POLLERR | POLLHUP)) ? fd : ARES_SOCKET_BAD;
  ares_socket_t wfd = (revents & POLLOUT) ? fd : ARES_SOCKET_BAD;
  ares_process_fd(channel_, rfd, wfd);
  rearm(fd);
}

void DnsResolver::rearm(int fd) {
  auto it = wanted_.find(fd);
  if (it != wanted_.end()) hooks_.dns_poll(fd, it->second);
}

void DnsResolver::on_tick(uint64_t now_ms) {
  if (!waiting_.empty()) ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  cache_.sweep(now_ms);
}

}  // namespace up
