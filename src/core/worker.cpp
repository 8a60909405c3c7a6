#include "core/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/ops.h"
#include "route/snapshot_store.h"
#include "udp/udp_association.h"

namespace up {

namespace {
constexpr unsigned ring_entries = 4096;
constexpr int listen_backlog = 4096;
constexpr long tick_ns = 100 * 1000 * 1000;  // timeouts, c-ares timers, pipe waiters
constexpr size_t max_pipes_per_worker = 1024;
constexpr size_t idle_pipes_kept = 64;
constexpr int pipe_bytes = 1 << 20;  // fewer splice calls per GB; pages are only held in flight
// Provided buffers for small relay reads (Runtime::relay_buffers of them). A read that fills
// one means bulk and moves its direction to splice; otherwise a buffer is held only while its
// send is in flight, which is mostly no time at all. A small pool does: 128 x 16 KiB = 2 MiB
// per worker, resident once the ring has cycled through it.
constexpr uint32_t relay_buffer_bytes = 16 * 1024;
// UDP datagrams: any size up to 64 KiB, plus recvmsg's header and the source address in front.
// Held only while a datagram's send is in flight (or its name resolves); pages are touched as
// datagrams fill them.
constexpr unsigned udp_buffer_count = 64;
constexpr uint32_t udp_buffer_bytes = 64 * 1024 + 128;
}  // namespace

Worker::Worker(unsigned id, Runtime& rt)
    : id_(id),
      rt_(rt),
      pipes_(max_pipes_per_worker, idle_pipes_kept, pipe_bytes),
      timers_(monotonic_ms()) {}

Worker::~Worker() = default;

void Worker::start(int cpu, std::function<void(unsigned, std::string)> bound) {
  thread_ = std::thread([this, cpu, bound = std::move(bound)] { run(cpu, bound); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

namespace {
std::string listener_key(const ListenerConfig& lc) {
  return lc.name + '\t' + lc.listen.text + '\t' + to_string(lc.protocol);
}
}  // namespace

bool Worker::open_listener(size_t i, std::string& err) {
  const ListenerConfig& lc = snap_->config.listeners[i];
  const sockaddr* sa = reinterpret_cast<const sockaddr*>(&lc.listen.addr);
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = "listeners[" + std::to_string(i) + "] (" + lc.name + "): socket: " + strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // One listening socket per worker on the same address: the kernel spreads connections.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // inherited by accepted fds
  if (bind(fd, sa, lc.listen.len) != 0 || listen(fd, listen_backlog) != 0) {
    err = "listeners[" + std::to_string(i) + "] (" + lc.name + "): cannot listen on " +
          lc.listen.text + ": " + strerror(errno) +
          (errno == EADDRINUSE ? " (another process holds the port; pick another listen)" : "");
    close(fd);
    return false;
  }
  auto l = std::make_unique<Listener>();
  l->fd = fd;
  l->index = static_cast<uint16_t>(i);
  l->config = lc;
  l->key = listener_key(lc);
  l->stats_key = lc.name + '\t' + to_string(lc.protocol);
  listeners_.push_back(std::move(l));
  return true;
}

bool Worker::open_listeners(std::string& err) {
  const auto& cfg = snap_->config;
  for (size_t i = 0; i < cfg.listeners.size(); ++i)
    if (!open_listener(i, err)) return false;
  return true;
}

void Worker::close_listener(Listener& l) {
  if (l.fd < 0) return;
  // Clients already in the backlog connected before this: served, not reset. Bounded by the
  // backlog's size, so a flood cannot keep this loop going.
  for (int n = 0, fd; n < listen_backlog &&
                      (fd = accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;
       ++n)
    admit(l, fd);
  // shutdown(2) takes the socket out of the listening table now, so new clients are refused;
  // close(2) alone would not while the ring's accept request, or the ring's asynchronous
  // teardown after the worker exits, still holds a reference to the file.
  shutdown(l.fd, SHUT_RD);
  if (l.accept_armed) {
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel64(s, pack(&l, Op::accept), 0);
    io_uring_sqe_set_data64(s, pack(nullptr, Op::ignored));
    submit_now();  // cancel before the fd closes under it
  }
  accept_paused_.erase(std::remove(accept_paused_.begin(), accept_paused_.end(), &l),
                       accept_paused_.end());
  close(l.fd);
  l.fd = -1;
}

void Worker::sync_listeners() {
  snap_ = rt_.snapshots->enter(id_);  // the snapshot that carries the new listeners
  const auto& cfg = snap_->config;
  std::vector<bool> have(cfg.listeners.size(), false);
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    size_t found = cfg.listeners.size();
    for (size_t i = 0; i < cfg.listeners.size(); ++i)
      if (listener_key(cfg.listeners[i]) == (*it)->key) found = i;
    if (found < cfg.listeners.size()) {
      (*it)->index = static_cast<uint16_t>(found);
      (*it)->config = cfg.listeners[found];  // what the key leaves out, e.g. TLS on or off
      have[found] = true;
      ++it;
    } else {
      close_listener(**it);
      // Its cancelled accept still points here until the last completion (on_accept frees it).
      if ((*it)->accept_armed) closed_listeners_.push_back(std::move(*it));
      it = listeners_.erase(it);
    }
  }
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    if (have[i]) continue;
    std::string err;
    if (open_listener(i, err)) {
      arm_accept(*listeners_.back());
      if (id_ == 0)
        UP_INFO("listening on %s (%s, %s)", cfg.listeners[i].listen.text.c_str(),
              cfg.listeners[i].name.c_str(), to_string(cfg.listeners[i].protocol));
    } else {
      UP_ERROR("worker %u: %s", id_, err.c_str());
    }
  }
}

void Worker::run(int cpu, std::function<void(unsigned, std::string)> bound) {
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  char name[16];
  snprintf(name, sizeof name, "up-worker-%u", id_);
  pthread_setname_np(pthread_self(), name);

  int r = setup_ring(ring_, ring_entries, features_);
  if (r < 0) {
    rt_.snapshots->leave(id_);
    bound(id_, std::string("io_uring_queue_init: ") + strerror(-r));
    return;
  }
  // Each io_uring_enter then skips looking the ring's fd up (Linux 5.18+; without it the
  // plain fd is used, as before).
  io_uring_register_ring_fd(&ring_);
  if (rt_.relay != Runtime::Relay::splice) {
    bufs_ = std::make_unique<BufferRing>(ring_, rt_.relay_buffers, relay_buffer_bytes);
    if (!bufs_->ok()) {
      if (id_ == 0)
        UP_WARN("io_uring: provided buffer rings unavailable (%s): every tunnel relays with "
                "splice, small messages included (Linux 5.19+ has them)",
                strerror(bufs_->error()));
      bufs_.reset();
    }
  }
  snap_ = rt_.snapshots->enter(id_);
  now_ms_ = monotonic_ms();
  dns_ = std::make_unique<DnsResolver>(static_cast<PollHooks&>(*this), snap_->config.dns.servers,
                                       snap_->config.dns.cache_max_ttl_s);
  std::string err;
  if (!dns_->ok()) err = dns_->error();
  if (err.empty()) open_listeners(err);
  if (!err.empty()) {
    for (auto& l : listeners_) close(l->fd);
    listeners_.clear();
    dns_.reset();
    bufs_.reset();
    io_uring_queue_exit(&ring_);
    rt_.snapshots->leave(id_);
    bound(id_, err);
    return;
  }
  for (auto& l : listeners_) arm_accept(*l);
  arm_tick();
  arm_mailbox();
  bound(id_, "");

  for (;;) {
    // Completions that get_sqe took out of the CQ after the last turn are work already here.
    int w = io_uring_submit_and_wait(&ring_, batch_.empty() ? 1 : 0);
    // -EBADR (completions dropped: the kernel could not allocate its overflow list) comes back
    // on every later wait, so it ends the loop like any other error rather than spinning; the
    // worker's listeners shut on the way out and the other workers take the new clients.
    if (w < 0 && w != -EINTR && w != -EAGAIN && w != -EBUSY) {
      UP_ERROR("worker %u: io_uring_submit_and_wait: %s", id_, strerror(-w));
      break;
    }
    now_ms_ = monotonic_ms();
    // Quiescent point: nothing older than this snapshot is held past here, and connections
    // accepted in this batch see every snapshot published before they arrived.
    snap_ = rt_.snapshots->enter(id_);
    reap(ring_, batch_);
    for (size_t i = 0; i < batch_.size(); ++i) handle(batch_[i]);  // may grow: index, not ref
    batch_.clear();
    while (!deferred_.empty()) {
      std::vector<Deferred> batch;
      batch.swap(deferred_);
      for (const Deferred& d : batch) {
        d.c->on_completion(d.op, d.res, Connection::plaintext_flag);
        if (d.c->can_free()) release(d.c);
      }
    }
    // UDP associations whose receive stopped on an empty buffer ring: again, once buffers are
    // back (each retry that finds the ring empty again waits for the next batch or tick).
    if (!udp_waiters_.empty() && udp_bufs_ && udp_bufs_->has_free()) retry_waiters(udp_waiters_);
    if (rt_.stopping.load(std::memory_order_acquire) && !stopping_) begin_stop();
    if (stopping_) {
      if (conn_count_ == 0) break;
      if (now_ms_ >= rt_.stop_deadline_ms) {
        for (Connection* c = conns_; c; c = c->next)
          if (!c->closed()) c->abort(Result::shutdown);
        for (Connection* c = conns_; c;) {
          Connection* next = c->next;
          if (c->can_free()) release(c);
          c = next;
        }
      }
    }
  }
  begin_stop();  // a loop that ended on a ring error must not leave its listeners open
  dns_.reset();
  bufs_.reset();
  udp_bufs_.reset();
  io_uring_queue_exit(&ring_);
  for (auto& [key, kept] : tls_sessions_) SSL_SESSION_free(kept.session);
  rt_.snapshots->leave(id_);
}

SSL_SESSION* Worker::tls_session(std::string_view key, uint64_t epoch) const {
  auto it = tls_sessions_.find(key);
  return it == tls_sessions_.end() || it->second.epoch != epoch ? nullptr : it->second.session;
}

void Worker::keep_tls_session(std::string_view key, SSL_SESSION* s, uint64_t epoch) {
  if (!s) return;
  if (!SSL_SESSION_is_resumable(s)) {
    SSL_SESSION_free(s);
    return;
  }
  auto it = tls_sessions_.find(key);
  if (it == tls_sessions_.end()) it = tls_sessions_.emplace(std::string(key), KeptSession{}).first;
  KeptSession& slot = it->second;
  if (slot.session) SSL_SESSION_free(slot.session);
  slot = {s, epoch};
}

BufferRing* Worker::udp_buffers() {
  if (!udp_bufs_ && !udp_bufs_failed_) {
    udp_bufs_ = std::make_unique<BufferRing>(ring_, udp_buffer_count, udp_buffer_bytes,
                                             BufferRing::udp_group);
    if (!udp_bufs_->ok()) {
      UP_WARN("io_uring: provided buffer rings unavailable (%s): UDP ASSOCIATE is answered 0x07 "
              "(Linux 6.0+ has them with multishot recvmsg)",
              strerror(udp_bufs_->error()));
      udp_bufs_.reset();
      udp_bufs_failed_ = true;
    }
  }
  return udp_bufs_.get();
}

void Worker::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& l : listeners_) close_listener(*l);
  rt_.workers_shut.fetch_add(1, std::memory_order_release);
  rt_.workers_shut.notify_all();
}

void Worker::arm_accept(Listener& l) {
  if (l.fd < 0) return;
  io_uring_sqe* s = sqe();
  if (l.multishot)
    io_uring_prep_multishot_accept(s, l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  else
    io_uring_prep_accept(s, l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, pack(&l, Op::accept));
  l.accept_armed = true;
}

void Worker::arm_tick() {
  tick_ts_.tv_sec = 0;
  tick_ts_.tv_nsec = tick_ns;
  io_uring_sqe* s = sqe();
  io_uring_prep_timeout(s, &tick_ts_, 0, 0);
  io_uring_sqe_set_data64(s, pack(nullptr, Op::tick));
}

void Worker::arm_mailbox() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, mailbox_.fd(), &mailbox_value_, sizeof mailbox_value_, 0);
  io_uring_sqe_set_data64(s, pack(nullptr, Op::mailbox));
}

void Worker::dns_poll(int fd, unsigned events) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, fd, events);
  io_uring_sqe_set_data64(s, pack_fd(fd, Op::dns_poll));
}

void Worker::dns_unpoll(int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_remove(s, pack_fd(fd, Op::dns_poll));
  io_uring_sqe_set_data64(s, pack(nullptr, Op::ignored));
  // c-ares closes the fd right after this callback: the removal must reach the kernel first.
  submit_now();
}

void Worker::close_fd(int fd) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer cannot see IORING_OP_CLOSE, so a reused fd number would look like a race.
  // Submitting first keeps the guarantee (queued requests have resolved their files); then a
  // plain close(2) that TSan does see.
  submit_now();
  close(fd);
  return;
#endif
  io_uring_sqe* s = sqe();
  io_uring_prep_close(s, fd);
  io_uring_sqe_set_data64(s, pack(nullptr, Op::ignored));
  s->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void Worker::wait_for_pipe(Connection* c) {
  if (c->waiting_for_pipe) return;
  c->waiting_for_pipe = true;
  pipe_waiters_.push_back(c);
}

void Worker::wait_for_udp_buffers(Connection* c) {
  if (c->waiting_for_pipe) return;
  c->waiting_for_pipe = true;
  udp_waiters_.push_back(c);
}

void Worker::retry_waiters(std::vector<Connection*>& list) {
  std::vector<Connection*> waiting;
  waiting.swap(list);
  for (Connection* c : waiting) {
    c->waiting_for_pipe = false;
    if (!c->closed()) c->retry_pipe();
    if (c->can_free()) release(c);
  }
}

io_uring_sqe* Worker::sqe_after_submit() {
  int err = 0;
  if (io_uring_sqe* s = get_sqe(ring_, batch_, err)) return s;
  // Every caller needs its SQE, and a ring that takes no submissions for a second serves
  // nobody: stop loudly (and restartably) rather than hang this worker's tunnels.
  UP_ERROR("worker %u: io_uring_submit keeps failing: %s; aborting", id_, strerror(-err));
  abort();
}

void Worker::submit_now() {
  if (int err = submit_queued(ring_, batch_)) {
    UP_ERROR("worker %u: io_uring_submit keeps failing: %s; aborting", id_, strerror(-err));
    abort();
  }
}

void Worker::handle(const Completion& cqe) {
  uint64_t ud = cqe.user_data;
  Op op = op_of(ud);
  switch (op) {
    case Op::accept:
      on_accept(*ptr_of<Listener>(ud), cqe.res, cqe.flags);
      return;
    case Op::tick:
      on_tick();
      return;
    case Op::mailbox:
      on_mailbox();
      return;
    case Op::dns_poll:
      if (cqe.res >= 0 && dns_) dns_->on_poll(fd_of(ud), static_cast<unsigned>(cqe.res));
      return;
    case Op::udp_client_in:
    case Op::udp_target_in:
    case Op::udp_send: {
      Connection* c = UdpAssociation::complete(ud, cqe.res, cqe.flags);
      if (c->can_free()) release(c);
      return;
    }
    case Op::none:
    case Op::ignored:
    case Op::count:
      return;
    default:
      break;
  }
  Connection* c = ptr_of<Connection>(ud);
  c->on_completion(op, cqe.res, cqe.flags);
  if (c->can_free()) release(c);
}

void Worker::on_accept(Listener& l, int res, uint32_t flags) {
  bool more = flags & IORING_CQE_F_MORE;
  if (!more) l.accept_armed = false;
  if (res >= 0) {
    // Also once the listener is closed (a reload dropped it, or the stop began): the client
    // connected before that and is served like the tunnels already open, not dropped.
    admit(l, res);
  } else if (l.fd < 0) {
    // Closed: its accept ends with -ECANCELED, or -EINVAL as the socket shut under it.
  } else if (res == -EINVAL && l.multishot) {
    l.multishot = false;  // kernel without multishot accept: one accept at a time
    UP_WARN("io_uring: multishot accept unavailable; using single accepts");
  } else if (res != -ECANCELED) {
    if (now_ms_ - accept_warned_ms_ > 1000) {
      UP_WARN("accept on listener %s: %s", l.config.name.c_str(), strerror(-res));
      accept_warned_ms_ = now_ms_;
    }
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
      if (!more) accept_paused_.push_back(&l);  // re-armed by the next tick, not in a hot loop
      return;
    }
  }
  if (l.fd < 0) {
    if (!l.accept_armed) forget_closed_listener(&l);
    return;
  }
  if (!more && !stopping_ && res != -ECANCELED) arm_accept(l);
}

void Worker::admit(Listener& l, int fd) {
  if (rt_.connections.fetch_add(1, std::memory_order_relaxed) >=
      rt_.max_connections.load(std::memory_order_relaxed)) {
    // Over the global cap: a clean refusal now rather than fd exhaustion later.
    rt_.connections.fetch_sub(1, std::memory_order_relaxed);
    rt_.refused_over_cap.fetch_add(1, std::memory_order_relaxed);
    close(fd);
    return;
  }
  auto* c = new Connection(*this, fd, l.config, l.index);
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++conn_count_;
  ++stats_.connections_total;
  ++stats_.connections_active;
  ++stats_.accepted[l.stats_key];
  c->start();
  if (c->can_free()) release(c);
}

void Worker::forget_closed_listener(Listener* l) {
  auto it = std::find_if(closed_listeners_.begin(), closed_listeners_.end(),
                         [l](const auto& p) { return p.get() == l; });
  if (it != closed_listeners_.end()) closed_listeners_.erase(it);
}

void Worker::on_tick() {
  timers_.advance(now_ms_, [this](TimerNode* n) {
    Connection* c = static_cast<Connection*>(n->owner);
    c->on_timeout();
    if (c->can_free()) release(c);
  });
  if (dns_) dns_->on_tick(now_ms_);
  if (!pipe_waiters_.empty()) retry_waiters(pipe_waiters_);
  if (!udp_waiters_.empty()) retry_waiters(udp_waiters_);
  // Listeners whose accept stopped on fd exhaustion get another chance each tick.
  if (!accept_paused_.empty()) {
    if (!stopping_)
      for (Listener* l : accept_paused_) arm_accept(*l);
    accept_paused_.clear();
  }
  arm_tick();
}

void Worker::on_mailbox() {
  std::vector<std::function<void()>> items;
  mailbox_.take(items);
  for (auto& fn : items) fn();
  arm_mailbox();
}

void Worker::adopt(Connection* c) {
  rt_.connections.fetch_add(1, std::memory_order_relaxed);
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++conn_count_;
  ++stats_.connections_total;
  ++stats_.connections_active;
}

void Worker::release(Connection* c) {
  if (c->waiting_for_pipe) return;  // still referenced by pipe_waiters_; freed on next tick
  if (c->prev)
    c->prev->next = c->next;
  else
    conns_ = c->next;
  if (c->next) c->next->prev = c->prev;
  timers_.disarm(&c->timer);
  --conn_count_;
  --stats_.connections_active;
  rt_.connections.fetch_sub(1, std::memory_order_relaxed);
  delete c;
}

}  // namespace up

namespace up {

size_t Worker::kick(std::string_view user, Result why) {
  size_t n = 0;
  for (Connection* c = conns_; c;) {
    Connection* next = c->next;
    // A login still in crypt(3) is judged when its answer comes (Connection::on_verified),
    // so the client hears a refusal rather than a bare close.
    if (!c->closed() && c->user() == user && c->state() != State::verifying) {
      c->abort(why);
      ++n;
      if (c->can_free()) release(c);
    }
    c = next;
  }
  return n;
}

std::vector<ConnectionInfo> Worker::list_connections(std::string_view user) const {
  std::vector<ConnectionInfo> out;
  for (const Connection* c = conns_; c; c = c->next)
    if (!c->closed() && (user.empty() || c->user() == user)) out.push_back(c->describe(now_ms_));
  return out;
}

}  // namespace up
