#pragma once
// One client connection and everything it leads to, as an explicit state machine:
//
//   handshake -> [verifying] -> dialing -> replying -> relaying
//             (http)          -> forwarding (absolute URI, keep-alive loop)
//   VLESS UDP: as a tunnel, with a UDP socket as the target (relay/datagram_relay.cpp)
//   socks5 BIND: handshake -> dialing (listening, first reply sent) -> replying -> relaying
//   socks5 UDP ASSOCIATE: handshake -> [dialing] -> udp (udp/udp_association.h relays;
//             the control connection is watched for its close)
//   agent listener: handshake (HELLO) -> [verifying] -> agent (a control link: heartbeats) or
//             handed to the agent's idle pool (a reverse link; agent/agent_frontend.cpp)
//   any:      failing (sending an error reply) -> closed
//
// The handshake belongs to the listener's frontend (frontend/frontend.h: SOCKS5, HTTP,
// VLESS), which asks the dialer for the route (upstream/) and answers the client in its
// protocol; a TLS listener runs its TLS handshake first, in `handshake`.
//
// Each state has one handler; every way a tunnel ends goes through finish(result), which
// writes the access-log line. Once the client has its answer the tunnel belongs to a relay
// (relay/relay.h), which sees this object as a record: two transports, counters, the user's
// bandwidth cap, the idle deadline. Memory: an idle relaying tunnel holds this struct and its
// relay's small state (the handshake buffer and the pipes are given back), see
// docs/internals.md.
#include <liburing.h>
#include <netinet/in.h>
#include <openssl/types.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/ops.h"
#include "core/timer_wheel.h"
#include "core/worker_stats.h"
#include "uringproxy/config.h"
#include "uringproxy/target.h"

namespace up {

class Worker;
struct HttpForward;
class Frontend;
class Dialer;
struct UpstreamSession;
struct TlsIo;
class Relay;
struct Upstream;
class UdpAssociation;
struct GatewayLinks;

enum class State : uint8_t {
  handshake,  // the frontend reads and parses the client's request (frontend/)
  verifying,
  dialing,
  replying,
  relaying,
  forwarding,
  udp,
  agent,  // an agent's control link after its HELLO (agent/agent_frontend.cpp)
  failing,
  closed,
};

// Outcomes as the access log names them.
enum class Result : uint8_t {
  ok,
  auth_failed,
  denied,
  bad_request,
  unsupported,
  dns_failed,
  refused,
  unreachable,
  timeout,
  handshake_timeout,
  idle_timeout,
  reset,
  upstream_error,
  shutdown,
  client_closed,
  kicked,  // closed by the operator: kick, user deleted or disabled, password changed
  limited,  // over a connection limit
  over_quota,  // the user's byte quota for the period is spent (refused, or closed)
  tls_failed,  // a TLS listener's client did not complete the TLS handshake
  error,
};
const char* to_string(Result r);

// "1.2.3.4:5" or "[::1]:5", for logs and the connection list.
std::string format_client(const sockaddr_in6& a);

// The two ends of a connection, each a plain or TLS transport (core/transport.cpp).
enum class Side : uint8_t { client = 0, target = 1 };

// The reply a failed dial earns, in both protocols' terms.
struct Failure {
  Result result;
  uint8_t socks_reply;  // RFC 1928 REP
  int http_status;
};

class alignas(32) Connection final {
 public:
  Connection(Worker& w, int client_fd, const ListenerConfig& listener, uint16_t listener_index);
  // Agent mode (src/agent): a link this process dials to its gateway, control or reverse. The
  // gateway is the "client" side (TLS, this end the TLS client); a tunnel's target is the
  // target side, dialled as a direct route. start_link() instead of start().
  Connection(Worker& w, GatewayLinks& links, bool control);
  void start_link();
  ~Connection();

  void start();
  // A completion for one of this connection's operations.
  void on_completion(Op op, int res, uint32_t flags);
  void on_timeout();
  // Called by the worker when a pipe may be free again, or the bandwidth cap has room.
  void retry_pipe();
  // Close now (shutdown grace over, kick): no reply, result as given.
  void abort(Result r);
  bool closed() const { return state_ == State::closed; }
  const std::string& user() const { return user_; }
  ConnectionInfo describe(uint64_t now_ms) const;
  bool can_free() const {
    return state_ == State::closed && inflight_ == 0 && async_ == 0 && udp_drained();
  }

  // Async jobs (password checks) keep the object alive until they report back; `hash` is the
  // one the password was checked against.
  void on_verified(bool ok, const uint8_t* digest, std::string_view hash);

  // Completions the connection posts to itself (TLS plaintext ready without touching the
  // ring) carry this flag, so they are not mistaken for ciphertext.
  static constexpr uint32_t plaintext_flag = 1u << 31;
  // Every operation that touches the target socket or its buffers.
  static constexpr uint32_t target_ops_mask =
      (1u << static_cast<unsigned>(Op::target_send)) | (1u << static_cast<unsigned>(Op::target_recv)) |
      (1u << static_cast<unsigned>(Op::tls_send)) | (1u << static_cast<unsigned>(Op::tls_recv)) |
      (1u << static_cast<unsigned>(Op::connect)) | (1u << static_cast<unsigned>(Op::up_out)) |
      (1u << static_cast<unsigned>(Op::down_in)) |
      (1u << static_cast<unsigned>(Op::bind_accept));

  // --- the record, as the phases see it: the relay (relay/), the dialer (upstream/dialer.h)
  // and the frontends (frontend/) use only what is public
  Worker& worker() const { return w_; }
  int fd(Side s) const { return s == Side::client ? cfd_ : tfd_; }
  TlsIo* tls(Side s) const { return s == Side::client ? ctls_.get() : tls_.get(); }
  // Plaintext through a side's transport (core/transport.cpp); each completes as that side's
  // client_send / target_send / client_recv / target_recv.
  void submit_send(Side s, const char* data, uint32_t len);
  void submit_recv(Side s, char* buf, uint32_t len);
  void half_close(Side s);  // EOF to that side: close_notify on TLS, else shutdown(SHUT_WR)
  // A phase's own ring operation, prepared on an sqe from worker().sqe(): tagged and counted
  // in flight, so its completion comes back through on_completion.
  void submit(io_uring_sqe* sqe, Op op);
  bool in_flight(Op op) const { return inflight_ & (1u << static_cast<unsigned>(op)); }
  void count_up(uint64_t n);
  void count_down(uint64_t n);
  // Where the phase is (a frontend that runs past its handshake sets its own states: HTTP
  // forwarding, agent links), who and where to.
  State state() const { return state_; }
  void set_state(State s) { state_ = s; }
  const Target& target() const { return target_; }
  void set_target(const Target& t) { target_ = t; }
  const std::string& group() const { return group_; }
  const sockaddr_in6& client_address() const { return client_addr_; }
  // The target transport, as the dialer (upstream/dialer.h) sets it up.
  void set_target_fd(int fd) { tfd_ = fd; }
  void set_target_tls(std::unique_ptr<TlsIo> t);
  void tls_handshake(Side s) { tls_handshake_step(s); }  // ends in the dialer (target side)
  bool target_ops_in_flight() const { return inflight_ & target_ops_mask; }
  // Closes the target transport, cancelling what is in flight on it (an upstream's TLS session
  // is kept for resumption).
  void close_target();
  void cancel_ops(uint32_t mask);  // the outstanding ring operations among `mask` (bit = Op)
  void set_deadline_in(uint32_t ms);
  void wait_for_retry();  // retry_pipe() on the worker's next tick
  // Queues a small reply (SOCKS5's) to the client; several may be in flight.
  void reply_client(const uint8_t* data, uint32_t len);
  // The route the tunnel uses (counted in its active connections until the end).
  void use_route(std::shared_ptr<const Upstream> u);
  // The dialer's two ends: the target is ready (the frontend answers the client, then the
  // relay starts), or the request failed (the frontend answers with the failure's code).
  void dialed();
  void dialed_with_reply(const uint8_t* data, uint32_t len);  // a BIND's second reply
  void fail(const Failure& f);

  // --- the frontend's view (frontend/frontend.h): the handshake buffer, who and where
  // (core/connection.cpp, core/authenticate.cpp)
  std::string_view handshake() const { return {hs_.get(), hs_len_}; }  // read, not consumed
  bool handshake_full() const { return hs_len_ >= hs_cap_; }
  void ensure_handshake_buffer(uint32_t cap);
  void consume_handshake(uint32_t n);
  void submit_recv_client();      // more of the handshake, into the buffer
  void read_more_handshake();     // the message is incomplete: read on, within the buffer
  void next_handshake_message();  // parse what the client pipelined, or read
  bool client_send_pending() const { return send_left_[0] > 0; }
  void submit_send_client(const char* data, uint32_t len) { submit_send(Side::client, data, len); }
  // An error reply is on its way (queued by the frontend); the connection ends once it is sent.
  void fail_after_reply(Result r);
  // A password login (the user name may carry a group: alice.us-east); the frontend hears
  // on_authenticated or answer_auth_failed.
  void authenticate(std::string_view user, std::string_view password);
  // A frontend that identified the user itself (VLESS: by uuid).
  void set_user(std::string user) {
    user_ = std::move(user);
    group_.clear();
  }
  void on_authenticated();  // counts the user, then the frontend's on_authenticated
  void on_auth_failed();    // counted and throttled like a wrong password
  std::array<uint8_t, 16> client_key() const;  // the client address, IPv4 as v4-mapped
  void set_datagram() { datagram_ = true; }    // VLESS UDP: see datagram()
  // The request, once target() is set (the dialer decides and reports back).
  void route_and_dial();
  void bind_request();  // SOCKS5 BIND: the target connects to us (upstream/bind_dial.cpp)
  void udp_associate(const Target& named);  // SOCKS5 UDP ASSOCIATE (core/udp_handoff.cpp)
  // Absolute-URI HTTP: the connection becomes a keep-alive forwarding loop; null otherwise.
  HttpForward& start_forwarding();
  HttpForward* forwarding() const { return fwd_.get(); }
  // The keep-alive loop (frontend/http_forward.cpp): each request is its own exchange with
  // the origin; client bytes land in the handshake buffer (counted before on_client_recv).
  void submit_send_target(const char* data, uint32_t len) { submit_send(Side::target, data, len); }
  void submit_recv_target(char* buf, uint32_t len) { submit_recv(Side::target, buf, len); }
  void release_route();  // forget the upstream (and its least_conn count)
  // A forwarded request from a user other than the previous one: everything the previous user
  // held (origin connection, route, counters) is closed out first, so the new user is
  // authorised, routed, limited and counted from scratch.
  void change_user();

  // --- agent links (agent/agent_frontend.cpp on the gateway, agent/reverse_link.cpp in agent
  // mode): a frontend whose connection is a link, not a user's tunnel
  void set_agent_link() { agent_link_ = true; }  // no access-log line, no tally
  void dial_direct();  // agent mode: the gateway's TUNNEL, no route (upstream/dialer.h)
  // An off-ring job (a secret check) holds the connection until it reports back.
  void async_started() { ++async_; }
  void async_done() { --async_; }
  bool nothing_in_flight() const { return inflight_ == 0; }
  // Gives up the client transport (fd and TLS state) whole: a reverse connection moving to
  // its agent's idle pool. The connection then ends without touching it.
  int release_client(std::unique_ptr<TlsIo>& tls);
  Result result() const { return result_; }
  uint64_t bytes_up() const { return bytes_up_; }
  uint64_t bytes_down() const { return bytes_down_; }
  uint64_t age_ms() const;

  // The user's bandwidth cap: bytes this direction may move now (SIZE_MAX if uncapped), it
  // `wants` at most that many; 0 parks the direction until the next tick (retry).
  bool bandwidth_capped() const { return bandwidth_bps_ != 0; }
  size_t bandwidth_allowance(bool up, size_t wants);
  void bandwidth_consume(bool up, size_t n);
  void touch();  // bytes moved: the idle deadline starts over
  // VLESS UDP (command 2): the target is a connected UDP socket and the relay carries
  // length-prefixed datagrams (relay/datagram_relay.cpp); each one sent on is counted here.
  bool datagram() const { return datagram_; }
  void count_datagram(bool up) { ++(up ? datagrams_up_ : datagrams_down_); }
  // The one way out: the access-log line, counters, and every resource given back.
  void finish(Result r);

  TimerNode timer;         // the worker's timing wheel
  Connection* next = nullptr;  // the worker's list of live connections
  Connection* prev = nullptr;
  bool waiting_for_pipe = false;

 private:
  // --- UDP ASSOCIATE (core/udp_handoff.cpp; the relay itself is udp/udp_association.cpp)
  void udp_dialed();  // the route is ready (direct, or the upstream's association): reply
  void udp_on_control(Side s, int res);  // bytes or EOF on a control connection
  void udp_retry();
  bool udp_drained() const;

  // --- handing the request to the dialer (upstream/dialer.h), once the user is admitted
  bool admit_user();      // quota and connection limit; false: failed
  void start_dialer();

  // --- agent mode (core/agent_link.cpp): the link's own TCP connect, then its TLS
  void link_connected(int res);

  // --- transports (core/transport.cpp): plaintext above, plain or TLS ciphertext on the ring
  void ring_send(Side s, const char* data, uint32_t len);
  void ring_recv(Side s, char* buf, uint32_t len);
  void tls_on_ring_send(Side s, int res);
  void tls_on_ring_recv(Side s, int res);
  void tls_flush(Side s);
  void tls_want_ciphertext(Side s);
  void tls_deliver_read(Side s);
  void tls_handshake_step(Side s);
  void tls_handshake_failed(Side s, const char* why);
  void count_tls_handshake(const char* result);  // a TLS listener's handshake ended so
  void defer_completion(Op op, int res);
  // Once the client's transport is ready (at once, or after a TLS listener's handshake):
  // the listener's protocol begins.
  void begin_session();

  // The client has its answer: the tunnel is handed to a relay (relay/relay.h).
  void start_relay();
  void reclaim(Op op, uint32_t flags);  // a completion that arrived after finish()

  // --- I/O helpers (core/connection.cpp)
  void submit_recv_client(char* buf, uint32_t len) { submit_recv(Side::client, buf, len); }
  void on_target_recv(int res);
  void on_send_done(Op op, int res);
  void drop_handshake_buffer();
  // The user's share of this connection ends (access-log line, per-user counters, connection
  // limit): at finish, and when a keep-alive HTTP client sends the next request as another user.
  void settle_user();
  void close_fds(bool reset);
  void write_access_log();
  std::string_view route_name() const;
  bool mark(Op op);

  Worker& w_;
  int cfd_;
  int tfd_ = -1;
  State state_ = State::handshake;
  Result result_ = Result::ok;
  uint16_t listener_index_;
  uint32_t inflight_ = 0;  // bitmask of outstanding ring operations (bit = Op)
  uint32_t async_ = 0;     // outstanding off-ring jobs
  State verifying_from_ = State::handshake;  // where a password check resumes
  bool auth_delayed_ = false;  // a failed login's answer waits for the deadline (brute force)

  // handshake input; freed once relaying starts
  std::unique_ptr<char[]> hs_;
  uint32_t hs_len_ = 0;
  uint32_t hs_cap_ = 0;
  // Small SOCKS5 replies are queued here so a pipelining client can have several in flight.
  char reply_[48];
  uint8_t reply_len_ = 0;

  // pending send (client_send / target_send): what is left to write
  const char* send_ptr_[2] = {nullptr, nullptr};
  uint32_t send_left_[2] = {0, 0};
  // The side's last plain recv emptied its socket (recv_emptied, core/ring.h): the next one
  // waits for readiness first instead of a read that would only find nothing.
  bool recv_drained_[2] = {false, false};

  bool bind_ = false;  // SOCKS5 BIND: the target connects to us (upstream/bind_dial.cpp)

  std::unique_ptr<Frontend> frontend_;
  std::unique_ptr<HttpForward> fwd_;
  std::unique_ptr<Dialer> dialer_;  // from the request until the relay starts
  std::unique_ptr<TlsIo> tls_;                 // target side is TLS (socks5s, https)
  std::unique_ptr<TlsIo> ctls_;                // client side is TLS (a TLS listener)
  std::shared_ptr<SSL_CTX> tls_ctx_;           // the listener's, until start() uses it
  std::unique_ptr<Relay> relay_;               // once relaying
  std::unique_ptr<UdpAssociation> udp_;        // UDP ASSOCIATE: from its request on
  std::shared_ptr<const Upstream> route_;      // the upstream this tunnel uses, if any
  bool counted_active_ = false;                // counted in route_->health->active
  bool agent_link_ = false;     // an agent's own connection: no access-log line, no tally

  // for the access log
  uint64_t started_ms_;
  UserTally* tally_ = nullptr;  // this worker's counters for user_ (stable: map nodes)
  UserShared* limits_ = nullptr;  // the user's cross-worker state (counted in limits_->active)
  uint64_t bandwidth_bps_ = 0;    // 0 = unlimited
  uint64_t bytes_up_ = 0;
  uint64_t bytes_down_ = 0;
  bool datagram_ = false;  // VLESS UDP: see datagram()
  uint64_t datagrams_up_ = 0;
  uint64_t datagrams_down_ = 0;
  sockaddr_in6 client_addr_{};
  std::string user_;
  std::string group_;
  Target target_;
};

}  // namespace up
