// SOCKS5 UDP relay: per datagram, check who sent it, parse the header, apply the ACL and the
// user's bandwidth cap, resolve a name (async, cached), and send it on from the buffer it
// arrived in. Replies from targets get a header written in front (a second iovec).
#include "udp/udp_association.h"

#include <ares.h>
#include <errno.h>
#include <liburing.h>
#include <string.h>
#include <unistd.h>

#include "core/buffer_ring.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/worker.h"
#include "uringproxy/socks5.h"

namespace up {

namespace {

constexpr uint32_t bit(Op op) { return 1u << static_cast<unsigned>(op); }
constexpr uint32_t max_sends = 256;    // datagrams in flight per association
constexpr size_t max_held = 32;        // datagrams waiting for names, per association
constexpr size_t max_lookups = 64;     // names remembered per association
constexpr size_t max_peers = 64;       // targets that may answer (the most recent ones)

// Every address as AF_INET6 (IPv4 as v4-mapped), so one comparison serves both families.
sockaddr_in6 mapped(const sockaddr* sa) {
  sockaddr_in6 out{};
  out.sin6_family = AF_INET6;
  if (sa->sa_family == AF_INET6) {
    memcpy(&out, sa, sizeof out);
    out.sin6_flowinfo = 0;
    out.sin6_scope_id = 0;
  } else if (sa->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    out.sin6_addr.s6_addr[10] = out.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&out.sin6_addr.s6_addr[12], &v4->sin_addr, 4);
    out.sin6_port = v4->sin_port;
  }
  return out;
}

bool is_v4_mapped(const sockaddr_in6& a) { return IN6_IS_ADDR_V4MAPPED(&a.sin6_addr); }

// `a` in the form a socket of `family` takes (in place); returns its length, 0 if it cannot.
socklen_t socket_form(sockaddr_in6& a, int family) {
  if (family == AF_INET6) return sizeof(sockaddr_in6);
  if (!is_v4_mapped(a)) return 0;
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = a.sin6_port;
  memcpy(&v4.sin_addr, &a.sin6_addr.s6_addr[12], 4);
  memset(&a, 0, sizeof a);
  memcpy(&a, &v4, sizeof v4);
  return sizeof v4;
}

// The address as it is written into a UDP header for the client: IPv4 as IPv4.
size_t header_for(const sockaddr_in6& a, uint8_t out[22]) {
  sockaddr_in6 copy = a;
  if (is_v4_mapped(copy)) socket_form(copy, AF_INET);
  return socks5::encode_udp_header(reinterpret_cast<const sockaddr*>(&copy), out);
}

bool same(const sockaddr_in6& a, const sockaddr_in6& b) {
  return a.sin6_port == b.sin6_port && memcmp(&a.sin6_addr, &b.sin6_addr, 16) == 0;
}

}  // namespace

struct UdpAssociation::Held {
  int32_t buf;
  const uint8_t* data;
  uint32_t len;
  uint16_t port;
};

class UdpAssociation::Lookup final : public DnsWaiter {
 public:
  Lookup(UdpAssociation& a, std::string name, bool name_allowed)
      : a_(a), name(std::move(name)), name_allowed(name_allowed) {}
  void on_resolved(int status, const std::vector<ResolvedAddress>& addrs) override {
    a_.resolved(*this, status, addrs);
  }
  UdpAssociation& a_;
  std::string name;
  bool name_allowed;  // the ACL allowed the name itself (an allow host or suffix)
  bool pending = false;
  std::vector<Held> queued;
};

UdpAssociation::UdpAssociation(Worker& w, Connection& c, const Target& named,
                               const sockaddr_in6& tcp_client)
    : w_(w), c_(c) {
  client_ = mapped(reinterpret_cast<const sockaddr*>(&tcp_client));
  client_.sin6_port = 0;
  // RFC 1928: the request names where the client will send from; all zeros means "not known".
  static const uint8_t zero[16] = {};
  if (named.is_literal() && memcmp(named.ip, zero, named.kind == Target::Kind::ipv4 ? 4 : 16)) {
    sockaddr_storage ss{};
    named.to_sockaddr(ss);
    client_ = mapped(reinterpret_cast<const sockaddr*>(&ss));
  }
  if (named.port) {
    client_.sin6_port = htons(named.port);
    client_port_known_ = true;
  }
}

UdpAssociation::~UdpAssociation() { close(); }

int UdpAssociation::open(const sockaddr_storage& local, const sockaddr_storage* relay) {
  BufferRing* ring = w_.udp_buffers();
  if (!ring) return EOPNOTSUPP;
  sockaddr_storage at = local;
  socklen_t len = at.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (at.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&at)->sin6_port = 0;
  else
    reinterpret_cast<sockaddr_in*>(&at)->sin_port = 0;
  cfd_ = socket(at.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (cfd_ < 0) return errno;
  if (bind(cfd_, reinterpret_cast<sockaddr*>(&at), len) != 0) return errno;
  len = sizeof bound_;
  getsockname(cfd_, reinterpret_cast<sockaddr*>(&bound_), &len);
  // One dual-stack socket reaches IPv4 and IPv6 targets; a host without IPv6 gets IPv4 only.
  tfd_ = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (tfd_ >= 0) {
    int off = 0;
    setsockopt(tfd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  } else {
    tfamily_ = AF_INET;
    tfd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (tfd_ < 0) return errno;
  }
  if (relay) {
    upstream_ = true;
    relay_ = mapped(reinterpret_cast<const sockaddr*>(relay));
  }
  // A burst larger than a socket's receive queue is dropped by the kernel; SO_RXQ_OVFL
  // reports how many with the next datagram, so those drops are counted too (overflow).
  int one = 1;
  for (int fd : {cfd_, tfd_}) setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
  for (int i = 0; i < 2; ++i) {
    // The kernel lays out header, name, control, payload back to back in the buffer: a name
    // slot rounded up to 8 keeps the control message aligned for struct cmsghdr.
    recv_msg_[i].msg_namelen = (sizeof(sockaddr_in6) + alignof(cmsghdr) - 1) & ~(alignof(cmsghdr) - 1);
    recv_msg_[i].msg_controllen = CMSG_SPACE(sizeof(uint32_t));
  }
  ++w_.stats().udp_associations_active;
  counted_ = true;
  return 0;
}

void UdpAssociation::start() {
  arm(true);
  arm(false);
}

void UdpAssociation::arm(bool client_side) {
  Op op = client_side ? Op::udp_client_in : Op::udp_target_in;
  if (closed_ || (inflight_ & bit(op))) return;
  io_uring_sqe* s = w_.sqe();
  io_uring_prep_recvmsg_multishot(s, client_side ? cfd_ : tfd_, &recv_msg_[client_side ? 0 : 1],
                                  0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = BufferRing::udp_group;
  io_uring_sqe_set_data64(s, pack(this, op));
  inflight_ |= bit(op);
}

void UdpAssociation::retry() {
  for (int i = 0; i < 2; ++i)
    if (wants_rearm_[i]) {
      wants_rearm_[i] = false;
      arm(i == 0);
    }
}

void UdpAssociation::close() {
  if (closed_) return;
  closed_ = true;
  for (Op op : {Op::udp_client_in, Op::udp_target_in}) {
    if (!(inflight_ & bit(op))) continue;
    io_uring_sqe* s = w_.sqe();
    io_uring_prep_cancel64(s, pack(this, op), 0);
    io_uring_sqe_set_data64(s, pack(nullptr, Op::ignored));
    s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  }
  for (auto& [name, l] : lookups_) {
    if (l->pending) w_.dns().cancel(name, l.get());
    for (const Held& h : l->queued) put(h.buf);
    l->queued.clear();
  }
  lookups_.clear();
  held_ = 0;
  for (int* fd : {&cfd_, &tfd_})
    if (*fd >= 0) {
      w_.close_fd(*fd);
      *fd = -1;
    }
  if (counted_) --w_.stats().udp_associations_active;
  counted_ = false;
}

Connection* UdpAssociation::complete(uint64_t ud, int res, uint32_t flags) {
  Op op = op_of(ud);
  if (op == Op::udp_send) {
    UdpSend* s = ptr_of<UdpSend>(ud);
    UdpAssociation* a = s->owner;
    a->on_sent(s, res);
    return &a->c_;
  }
  UdpAssociation* a = ptr_of<UdpAssociation>(ud);
  a->on_recv(op == Op::udp_client_in, res, flags);
  return &a->c_;
}

void UdpAssociation::put(int32_t buf) {
  if (buf >= 0) w_.udp_buffers()->put(static_cast<uint16_t>(buf));
}

void UdpAssociation::drop(UdpDrop why, int32_t buf) {
  ++w_.stats().udp_dropped[static_cast<size_t>(why)];
  put(buf);
}

void UdpAssociation::on_recv(bool client_side, int res, uint32_t flags) {
  Op op = client_side ? Op::udp_client_in : Op::udp_target_in;
  bool more = flags & IORING_CQE_F_MORE;
  if (!more) inflight_ &= ~bit(op);
  int32_t buf = -1;
  BufferRing* ring = w_.udp_buffers();
  if (flags & IORING_CQE_F_BUFFER) {
    buf = static_cast<int32_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    ring->taken();
  }
  if (closed_) return put(buf);
  if (!more) {
    // The multishot receive ended: the ring ran dry (ENOBUFS) or something failed; it is armed
    // again once a batch of completions ends with buffers back in the ring (ENOBUFS), or at
    // the next tick, rather than in a loop. One that ended with a datagram re-arms now.
    if (res < 0) {
      wants_rearm_[client_side ? 0 : 1] = true;
      if (res == -ENOBUFS)
        w_.wait_for_udp_buffers(&c_);
      else
        w_.wait_for_pipe(&c_);
    } else {
      arm(client_side);
    }
  }
  if (res < 0 || buf < 0) return put(buf);
  msghdr& m = recv_msg_[client_side ? 0 : 1];
  auto* base = reinterpret_cast<uint8_t*>(ring->data(static_cast<uint16_t>(buf)));
  io_uring_recvmsg_out* o = io_uring_recvmsg_validate(base, res, &m);
  if (!o || (o->flags & MSG_TRUNC) || o->namelen < sizeof(sockaddr_in))
    return drop(UdpDrop::malformed, buf);
  count_kernel_drops(client_side ? 0 : 1, o);
  const auto* src = static_cast<const sockaddr*>(io_uring_recvmsg_name(o));
  const auto* data = static_cast<const uint8_t*>(io_uring_recvmsg_payload(o, &m));
  uint32_t len = io_uring_recvmsg_payload_length(o, res, &m);
  if (client_side)
    from_client(buf, src, data, len);
  else
    from_target(buf, src, data, len);
}

void UdpAssociation::count_kernel_drops(int side, io_uring_recvmsg_out* o) {
  for (cmsghdr* c = io_uring_recvmsg_cmsg_firsthdr(o, &recv_msg_[side]); c;
       c = io_uring_recvmsg_cmsg_nexthdr(o, &recv_msg_[side], c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL) continue;
    uint32_t total;
    memcpy(&total, CMSG_DATA(c), sizeof total);
    // The counter is the socket's total (it wraps): what grew since the last datagram.
    w_.stats().udp_dropped[static_cast<size_t>(UdpDrop::overflow)] += total - kernel_drops_[side];
    kernel_drops_[side] = total;
  }
}

bool UdpAssociation::client_source(const sockaddr* src) {
  sockaddr_in6 a = mapped(src);
  if (memcmp(&a.sin6_addr, &client_.sin6_addr, 16) != 0) return false;
  if (client_port_known_) return a.sin6_port == client_.sin6_port;
  client_.sin6_port = a.sin6_port;  // the first datagram from the client's address names it
  client_port_known_ = true;
  return true;
}

bool UdpAssociation::bandwidth_ok(bool up, uint32_t len) {
  // A datagram cannot be cut: it goes whole when the cap has any room, and the limiter's debt
  // holds back those after it (else one larger than the cap's 100 ms burst never passes).
  if (c_.bandwidth_allowance(up, len) == 0) return false;
  c_.bandwidth_consume(up, len);
  return true;
}

void UdpAssociation::mark_target(const Target& t) {
  if (c_.target().port != t.port || c_.target().host != t.host) c_.set_target(t);
}

void UdpAssociation::from_client(int32_t buf, const sockaddr* src, const uint8_t* data,
                                 uint32_t len) {
  if (!client_source(src)) return drop(UdpDrop::foreign_source, buf);
  socks5::UdpHeader h;
  if (socks5::parse_udp_header({data, len}, h) != socks5::UdpParse::ok)
    return drop(UdpDrop::malformed, buf);
  if (h.frag != 0) return drop(UdpDrop::frag, buf);
  const Snapshot& snap = w_.snapshot();
  const UserAcl* uacl = snap.find_user_acl(c_.user());
  Acl::Verdict verdict = snap.acl.check_target(h.target, uacl);
  if (verdict == Acl::Verdict::deny) return drop(UdpDrop::acl, buf);
  uint32_t payload = len - static_cast<uint32_t>(h.header_len);
  if (upstream_) {
    // The upstream resolves names itself: with allow lists, a name they do not list is refused
    // (as for tunnels).
    if (verdict == Acl::Verdict::check_addresses && snap.acl.has_allow(uacl))
      return drop(UdpDrop::acl, buf);
    if (!bandwidth_ok(true, payload)) return drop(UdpDrop::limit, buf);
    mark_target(h.target);
    c_.set_deadline_in(snap.config.limits.idle_timeout_ms);
    // The header goes on as the client wrote it (FRAG 0, checked): the upstream's relay reads
    // the destination from it.
    return send(true, buf, relay_, nullptr, 0, data, len, payload);
  }
  if (h.target.is_literal()) {
    // check_target judged the literal completely (the address stage included).
    if (!bandwidth_ok(true, payload)) return drop(UdpDrop::limit, buf);
    sockaddr_storage ss{};
    h.target.to_sockaddr(ss);
    sockaddr_in6 dest = mapped(reinterpret_cast<sockaddr*>(&ss));
    dest.sin6_port = htons(h.target.port);
    mark_target(h.target);
    c_.set_deadline_in(snap.config.limits.idle_timeout_ms);
    return send(true, buf, dest, nullptr, 0, data + h.header_len, payload, payload);
  }
  // A name: resolved through the worker's resolver (cached; a hit answers at once).
  mark_target(h.target);
  auto it = lookups_.find(h.target.host);
  if (it == lookups_.end()) {
    if (lookups_.size() >= max_lookups) {
      for (auto j = lookups_.begin(); j != lookups_.end();)
        j = j->second->pending ? std::next(j) : lookups_.erase(j);
      if (lookups_.size() >= max_lookups) return drop(UdpDrop::limit, buf);
    }
    bool name_allowed = verdict == Acl::Verdict::allow;
    it = lookups_
             .emplace(h.target.host,
                      std::make_unique<Lookup>(*this, h.target.host, name_allowed))
             .first;
  }
  if (held_ >= max_held) return drop(UdpDrop::limit, buf);
  Lookup& l = *it->second;
  l.queued.push_back({buf, data + h.header_len, payload, h.target.port});
  ++held_;
  if (l.pending) return;
  l.pending = true;
  w_.dns().resolve(l.name, &l, w_.now_ms());
}

void UdpAssociation::resolved(Lookup& l, int status, const std::vector<ResolvedAddress>& addrs) {
  l.pending = false;
  std::vector<Held> queued;
  queued.swap(l.queued);
  held_ -= queued.size();
  if (closed_) {
    for (const Held& h : queued) put(h.buf);
    return;
  }
  const Snapshot& snap = w_.snapshot();
  const UserAcl* uacl = snap.find_user_acl(c_.user());
  // The first address the ACL allows (a name that resolves to a private address is refused
  // unless the ACL opens it: DNS rebinding).
  const ResolvedAddress* pick = nullptr;
  if (status == ARES_SUCCESS)
    for (const ResolvedAddress& a : addrs) {
      if (tfamily_ == AF_INET && a.addr.ss_family != AF_INET) continue;
      if (snap.acl.address_allowed(reinterpret_cast<const sockaddr*>(&a.addr), uacl,
                                   l.name_allowed)) {
        pick = &a;
        break;
      }
    }
  for (const Held& h : queued) {
    if (status != ARES_SUCCESS) {
      drop(UdpDrop::dns, h.buf);
      continue;
    }
    if (!pick) {
      drop(UdpDrop::acl, h.buf);
      continue;
    }
    if (!bandwidth_ok(true, h.len)) {
      drop(UdpDrop::limit, h.buf);
      continue;
    }
    sockaddr_in6 dest = mapped(reinterpret_cast<const sockaddr*>(&pick->addr));
    dest.sin6_port = htons(h.port);
    c_.set_deadline_in(snap.config.limits.idle_timeout_ms);
    send(true, h.buf, dest, nullptr, 0, h.data, h.len, h.len);
  }
}

void UdpAssociation::from_target(int32_t buf, const sockaddr* src, const uint8_t* data,
                                 uint32_t len) {
  sockaddr_in6 from = mapped(src);
  if (!client_port_known_) return drop(UdpDrop::foreign_source, buf);
  const Snapshot& snap = w_.snapshot();
  if (upstream_) {
    if (!same(from, relay_)) return drop(UdpDrop::foreign_source, buf);
    socks5::UdpHeader h;
    if (socks5::parse_udp_header({data, len}, h) != socks5::UdpParse::ok)
      return drop(UdpDrop::malformed, buf);
    if (h.frag != 0) return drop(UdpDrop::frag, buf);
    uint32_t payload = len - static_cast<uint32_t>(h.header_len);
    if (!bandwidth_ok(false, payload)) return drop(UdpDrop::limit, buf);
    c_.set_deadline_in(snap.config.limits.idle_timeout_ms);
    // Already wrapped by the upstream: the header names the source; passed on as it came.
    return send(false, buf, client_, nullptr, 0, data, len, payload);
  }
  if (!known_peer(from)) return drop(UdpDrop::foreign_source, buf);
  if (!bandwidth_ok(false, len)) return drop(UdpDrop::limit, buf);
  c_.set_deadline_in(snap.config.limits.idle_timeout_ms);
  uint8_t header[22];
  size_t n = header_for(from, header);
  send(false, buf, client_, header, static_cast<uint32_t>(n), data, len, len);
}

void UdpAssociation::remember_peer(const sockaddr_in6& a) {
  if (known_peer(a)) return;
  if (peers_.size() < max_peers) {
    peers_.push_back(a);
    return;
  }
  peers_[next_peer_] = a;  // the oldest goes
  next_peer_ = (next_peer_ + 1) % max_peers;
}

bool UdpAssociation::known_peer(const sockaddr_in6& a) const {
  for (const sockaddr_in6& p : peers_)
    if (same(p, a)) return true;
  return false;
}

UdpSend* UdpAssociation::take_slot() {
  if (UdpSend* s = free_) {
    free_ = s->next_free;
    return s;
  }
  if (slots_.size() >= max_sends) return nullptr;
  slots_.push_back(std::make_unique<UdpSend>());
  slots_.back()->owner = this;
  return slots_.back().get();
}

void UdpAssociation::send(bool up, int32_t buf, const sockaddr_in6& dest, const uint8_t* header,
                          uint32_t header_len, const uint8_t* data, uint32_t len,
                          uint32_t payload) {
  UdpSend* s = take_slot();
  if (!s) return drop(UdpDrop::limit, buf);
  int fd = up ? tfd_ : cfd_;
  int family = up ? tfamily_ : bound_.ss_family;
  s->dest = dest;
  socklen_t dlen = socket_form(s->dest, family);
  if (dlen == 0) {  // an IPv6 destination from an IPv4-only socket
    s->next_free = free_;
    free_ = s;
    return drop(UdpDrop::error, buf);
  }
  if (up && !upstream_) remember_peer(dest);
  int n = 0;
  if (header_len) {
    memcpy(s->header, header, header_len);
    s->iov[n++] = {s->header, header_len};
  }
  s->iov[n++] = {const_cast<uint8_t*>(data), len};
  s->msg = {};
  s->msg.msg_name = &s->dest;
  s->msg.msg_namelen = dlen;
  s->msg.msg_iov = s->iov;
  s->msg.msg_iovlen = static_cast<size_t>(n);
  s->buf = buf;
  s->payload = payload;
  s->up = up;
  io_uring_sqe* q = w_.sqe();
  io_uring_prep_sendmsg(q, fd, &s->msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(q, pack(s, Op::udp_send));
  ++sends_;
}

void UdpAssociation::on_sent(UdpSend* s, int res) {
  --sends_;
  put(s->buf);
  s->buf = -1;
  if (!closed_) {
    if (res < 0) {
      ++w_.stats().udp_dropped[static_cast<size_t>(UdpDrop::error)];
    } else if (s->up) {
      ++datagrams_up_;
      ++w_.stats().udp_datagrams_up;
      c_.count_up(s->payload);
    } else {
      ++datagrams_down_;
      ++w_.stats().udp_datagrams_down;
      c_.count_down(s->payload);
    }
  }
  s->next_free = free_;
  free_ = s;
  // A receive that ran the buffer ring dry need not wait for the tick once this association's
  // sends have all given their buffers back (a burst drains at send speed, not 64 a tick).
  if (sends_ == 0 && !closed_) retry();
}

}  // namespace up
