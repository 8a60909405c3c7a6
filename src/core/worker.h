#pragma once
// One pinned thread, one io_uring, its own SO_REUSEPORT listeners and its own connections.
// Nothing here is shared with other workers except through Runtime (read-only or atomic).
#include <liburing.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "auth/credential_cache.h"
#include "core/buffer_ring.h"
#include "core/mailbox.h"
#include "core/ops.h"
#include "core/pipe_pool.h"
#include "core/ring.h"
#include "core/runtime.h"
#include "core/timer_wheel.h"
#include "core/worker_stats.h"
#include "route/route_selector.h"
#include "route/snapshot.h"
#include "upstream/dns_resolver.h"

namespace up {

class Connection;
enum class Result : uint8_t;

struct alignas(32) Listener {
  int fd = -1;
  uint16_t index = 0;  // its place in config.listeners as of the last sync
  bool multishot = true;
  bool accept_armed = false;  // an accept request (multishot or single) is in the ring
  // Its own copy: an accept completing after a reload published a snapshot, but before
  // sync_listeners ran here, must not look itself up by index in a reordered list.
  ListenerConfig config;
  std::string key;        // name, address, protocol: what identifies it across reloads
  std::string stats_key;  // name \t protocol, for the per-listener accept counter
};

class Worker final : private PollHooks {
 public:
  Worker(unsigned id, Runtime& rt);
  ~Worker();

  // Starts the thread; it binds its listeners and then reports through `bound`
  // (empty string = success).
  void start(int cpu, std::function<void(unsigned, std::string)> bound);
  void join();

  Mailbox& mailbox() { return mailbox_; }
  WorkerStats& stats() { return stats_; }
  // Run on this worker's thread (from its mailbox): close a user's tunnels; list tunnels.
  size_t kick(std::string_view user, Result why);
  std::vector<ConnectionInfo> list_connections(std::string_view user) const;
  // After a reload: close listeners the config dropped, open the ones it added.
  void sync_listeners();
  // Shuts every listener (new clients are refused from here on) and lets the open tunnels
  // drain; counts itself in Runtime::workers_shut. Idempotent. On this worker's thread.
  void begin_stop();
  unsigned id() const { return id_; }
  const RingFeatures& ring_features() const { return features_; }

  // --- for connections
  io_uring& ring() { return ring_; }
  io_uring_sqe* sqe() {
    if (io_uring_sqe* s = io_uring_get_sqe(&ring_)) return s;
    return sqe_after_submit();
  }
  const Snapshot& snapshot() const { return *snap_; }
  uint64_t now_ms() const { return now_ms_; }
  PipePool& pipes() { return pipes_; }
  // Provided buffers for the relay's small-message path; null if the kernel lacks them.
  BufferRing* buffers() { return bufs_.get(); }
  // Provided buffers for UDP associations (a datagram each, up to 64 KiB), registered on first
  // use; null if the kernel lacks buffer rings.
  BufferRing* udp_buffers();
  DnsResolver& dns() { return *dns_; }
  CredentialCache& credentials() { return credentials_; }
  TimerWheel& timers() { return timers_; }
  Runtime& runtime() { return rt_; }
  void wait_for_pipe(Connection* c);
  // Retries the pipe waiters now rather than on the next tick (something they wait for came).
  void retry_pipe_waiters() {
    if (!pipe_waiters_.empty()) retry_waiters(pipe_waiters_);
  }
  // A UDP association whose multishot receive ended because the UDP buffer ring ran dry: it is
  // re-armed as soon as a batch of completions ends with buffers back in the ring (at the
  // latest at the next tick), not 100 ms later.
  void wait_for_udp_buffers(Connection* c);
  // A completion the connection gives itself, delivered after the current batch of CQEs
  // (never re-entrantly). The op's in-flight bit stays set until then.
  void defer(Connection* c, Op op, int res) { deferred_.push_back({c, op, res}); }
  RouteCursors& cursors() { return cursors_; }
  // TLS sessions for resumption, one per key (an upstream id; the agent's links), this
  // worker's own (no locks). `epoch` is kept beside the session: a session kept under another
  // epoch is not offered, and the next one kept replaces it, so a key holds one session however
  // often the agent's identity changes.
  SSL_SESSION* tls_session(std::string_view key, uint64_t epoch = 0) const;
  void keep_tls_session(std::string_view key, SSL_SESSION* s, uint64_t epoch = 0);
  // Closes fd through the ring, after every SQE already queued: a close(2) now could let a
  // queued request resolve the fd number to whatever socket is accepted next.
  void close_fd(int fd);
  // Agent mode: a link to the gateway made on this worker's thread joins its connections
  // (counted, listed, drained on stop) as an accepted client would.
  void adopt(Connection* c);
  // Frees a finished connection (can_free()); callers outside handle() use it after async
  // completions.
  void release(Connection* c);

 private:
  void run(int cpu, std::function<void(unsigned, std::string)> bound);
  bool open_listeners(std::string& err);
  bool open_listener(size_t index, std::string& err);
  void close_listener(Listener& l);
  void arm_accept(Listener& l);
  void arm_tick();
  void arm_mailbox();
  void on_accept(Listener& l, int res, uint32_t flags);
  void admit(Listener& l, int fd);  // a client accepted on l becomes a Connection
  void forget_closed_listener(Listener* l);
  void on_tick();
  // Retries every connection on `list` (pipe_waiters_ or udp_waiters_); a safe point between
  // completions.
  void retry_waiters(std::vector<Connection*>& list);
  void on_mailbox();
  void handle(const Completion& cqe);
  io_uring_sqe* sqe_after_submit();
  // Submits now what is queued: for requests that must reach the kernel before an fd closes.
  void submit_now();
  void dns_poll(int fd, unsigned events) override;
  void dns_unpoll(int fd) override;

  unsigned id_;
  Runtime& rt_;
  io_uring ring_{};
  RingFeatures features_;
  std::thread thread_;
  // This turn's completions, copied out of the CQ; get_sqe appends here when it must take
  // completions to make the kernel accept more.
  std::vector<Completion> batch_;
  Mailbox mailbox_;
  uint64_t mailbox_value_ = 0;
  __kernel_timespec tick_ts_{};
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Listener>> closed_listeners_;  // until their accept completes
  uint64_t accept_warned_ms_ = 0;
  const Snapshot* snap_ = nullptr;
  uint64_t now_ms_ = 0;
  PipePool pipes_;
  std::unique_ptr<BufferRing> bufs_;
  std::unique_ptr<BufferRing> udp_bufs_;
  bool udp_bufs_failed_ = false;
  std::unique_ptr<DnsResolver> dns_;
  CredentialCache credentials_;
  TimerWheel timers_;
  Connection* conns_ = nullptr;  // intrusive list of live connections
  size_t conn_count_ = 0;
  std::vector<Connection*> pipe_waiters_;
  std::vector<Connection*> udp_waiters_;  // waiting_for_pipe set too: freed after their retry
  std::vector<Listener*> accept_paused_;
  struct Deferred {
    Connection* c;
    Op op;
    int res;
  };
  std::vector<Deferred> deferred_;
  RouteCursors cursors_;
  struct KeptSession {
    SSL_SESSION* session = nullptr;
    uint64_t epoch = 0;
  };
  StringMap<KeptSession> tls_sessions_;
  bool stopping_ = false;
  WorkerStats stats_;
};

}  // namespace up
