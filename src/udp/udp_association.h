#pragma once
// One SOCKS5 UDP association (RFC 1928 section 7), owned by the control connection that asked
// for it (Connection::udp_) and ending with it. Two UDP sockets: the relay socket the client
// sends to (bound on the address the client reached the listener on; the reply names it), and
// one dual-stack socket towards targets (direct) or towards the upstream's relay (socks5
// upstream route). Both receive with multishot recvmsg into the worker's UDP buffer ring; a
// datagram is sent on with sendmsg straight from that buffer (the header is skipped, or
// written in front with a second iovec), so no payload is copied. docs/wire.md says what the
// client sees; docs/internals.md how it sits on the ring.
#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ops.h"
#include "core/worker_stats.h"
#include "upstream/dns_resolver.h"
#include "uringproxy/target.h"

namespace up {

class Worker;
class Connection;
class UdpAssociation;

// One datagram on its way out: what sendmsg needs, alive until its completion.
struct alignas(32) UdpSend {
  UdpAssociation* owner = nullptr;
  UdpSend* next_free = nullptr;
  msghdr msg{};
  iovec iov[2]{};
  sockaddr_in6 dest{};
  uint8_t header[22]{};
  int32_t buf = -1;      // the UDP buffer ring's buffer holding the payload
  uint32_t payload = 0;  // bytes counted for the user once sent (the header excluded)
  bool up = false;       // client -> target
};

class alignas(32) UdpAssociation final {
 public:
  // `named`: DST.ADDR/DST.PORT of the client's request, where it says it will send from.
  UdpAssociation(Worker& w, Connection& c, const Target& named, const sockaddr_in6& tcp_client);
  ~UdpAssociation();
  UdpAssociation(const UdpAssociation&) = delete;
  UdpAssociation& operator=(const UdpAssociation&) = delete;

  // Opens the sockets: the relay socket on `local` (the control connection's local address),
  // and where datagrams go: `relay` is the upstream's relay address, or null for direct.
  // Returns 0 or an errno.
  int open(const sockaddr_storage& local, const sockaddr_storage* relay);
  // The relay socket's address, for the reply.
  const sockaddr_storage& bound() const { return bound_; }
  void start();  // arms both receives
  // Closes the sockets; completions still arrive and are absorbed (drained() says when).
  void close();
  bool drained() const { return inflight_ == 0 && sends_ == 0; }
  // Re-arms a receive the buffer ring ran dry for (called from the worker's tick).
  void retry();

  uint64_t datagrams_up() const { return datagrams_up_; }
  uint64_t datagrams_down() const { return datagrams_down_; }

  // The worker's entry for Op::udp_client_in, udp_target_in and udp_send completions;
  // returns the owning connection so the worker can free it once done.
  static Connection* complete(uint64_t user_data, int res, uint32_t flags);

 private:
  struct Held;  // a datagram waiting for its destination's name to resolve
  class Lookup;

  void on_recv(bool from_client, int res, uint32_t flags);
  void on_sent(UdpSend* s, int res);
  void arm(bool client_side);
  void from_client(int32_t buf, const sockaddr* src, const uint8_t* data, uint32_t len);
  void from_target(int32_t buf, const sockaddr* src, const uint8_t* data, uint32_t len);
  void resolved(Lookup& l, int status, const std::vector<ResolvedAddress>& addrs);
  // Sends `len` bytes at `data` (inside buffer `buf`) to `dest`, after `header` if any.
  void send(bool up, int32_t buf, const sockaddr_in6& dest, const uint8_t* header,
            uint32_t header_len, const uint8_t* data, uint32_t len, uint32_t payload);
  bool client_source(const sockaddr* src);
  bool bandwidth_ok(bool up, uint32_t len);
  void remember_peer(const sockaddr_in6& a);
  bool known_peer(const sockaddr_in6& a) const;
  void drop(UdpDrop why, int32_t buf);
  void count_kernel_drops(int side, io_uring_recvmsg_out* o);
  void put(int32_t buf);
  UdpSend* take_slot();
  void mark_target(const Target& t);

  Worker& w_;
  Connection& c_;
  int cfd_ = -1;  // relay socket, towards the client
  int tfd_ = -1;  // towards targets or the upstream relay (AF_INET6 dual-stack, else AF_INET)
  int tfamily_ = AF_INET6;
  sockaddr_storage bound_{};
  bool closed_ = false;
  bool counted_ = false;  // in uringproxy_udp_associations_active
  bool upstream_ = false;     // datagrams go to relay_ with their header, not to targets
  sockaddr_in6 relay_{};      // the upstream's relay (v4 as v4-mapped when tfd_ is AF_INET6)
  uint32_t inflight_ = 0;     // bit per Op (the two receives)
  bool wants_rearm_[2] = {false, false};  // a receive stopped on ENOBUFS: re-armed at retry()
  uint32_t sends_ = 0;        // sendmsg in flight
  msghdr recv_msg_[2]{};      // the multishot recvmsg templates (name, SO_RXQ_OVFL control)
  uint32_t kernel_drops_[2] = {0, 0};  // the sockets' SO_RXQ_OVFL counters, last seen

  // Who the client is: the address its request named, else the TCP client's IP; the port it
  // named, else the first one seen.
  sockaddr_in6 client_{};  // v4 as v4-mapped
  bool client_port_known_ = false;

  // Peers datagrams were sent to (direct): only they may answer (address-dependent filtering).
  std::vector<sockaddr_in6> peers_;
  size_t next_peer_ = 0;

  std::vector<std::unique_ptr<UdpSend>> slots_;
  UdpSend* free_ = nullptr;

  std::unordered_map<std::string, std::unique_ptr<Lookup>> lookups_;
  size_t held_ = 0;  // datagrams waiting in lookups

  uint64_t datagrams_up_ = 0;
  uint64_t datagrams_down_ = 0;
};

}  // namespace up
