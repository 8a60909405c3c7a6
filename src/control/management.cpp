#include "control/management.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "auth/password_verifier.h"
#include "config/config_equal.h"
#include "control/control_request.h"
#include "core/access_log.h"
#include "core/clock.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/worker.h"
#include "route/health_checker.h"
#include "route/snapshot_store.h"
#include "tls/server_context.h"
#include "upstream/upstream_probe.h"

namespace up {

namespace {
// docs/control-protocol.md: a control client that sends nothing for 30 s is closed. A metrics
// client gets 10 s for its request head (a scrape or a liveness probe sends it at once).
constexpr uint64_t control_idle_ms = 30000;
constexpr uint64_t metrics_idle_ms = 10000;
// Clients of each kind held at once. At the cap a new one displaces the kind's oldest idle
// client, so idle connections (metrics is reachable by every local user) can delay a probe by
// at most this many newer connections, never lock it out; the other kind is not affected.
constexpr size_t max_clients_per_kind = 128;
// Accepts per wake-up, so a connect flood cannot keep the loop from reading requests.
constexpr int accepts_per_turn = 16;
// How long an answer waits for a worker that does not answer.
constexpr uint64_t worker_answer_ms = 5000;

bool mkdirs(const std::string& dir, mode_t mode) {
  if (dir.empty() || dir == "/") return true;
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode);
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0 && !mkdirs(dir.substr(0, slash), mode)) return false;
  return mkdir(dir.c_str(), mode) == 0 || errno == EEXIST;
}

std::string http_response(const char* status, const char* type, const std::string& body) {
  return std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}
}  // namespace

// An eventfd the workers and probe threads write when they have finished something for us.
// Shared with their closures, so a late writer never writes to a closed (or reused) fd.
struct Management::Wake {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ~Wake() { close(fd); }
  void notify() const {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
  }
  void drain() const {
    uint64_t v;
    while (read(fd, &v, sizeof v) == sizeof v) {
    }
  }
};

struct Management::ThreadJob {
  struct Outcome {
    std::atomic<bool> done{false};
    std::string result;  // written before done is set
  };
  std::shared_ptr<Outcome> outcome;
  std::function<void(std::string)> then;
  std::thread thread;
};

Management::Management(std::string config_path, ConfigSet current, ConfigStamps stamps,
                       Runtime& rt, SnapshotStore& snapshots, HealthBoard& health,
                       HealthChecker& checker, AccessLog& access_log)
    : config_path_(std::move(config_path)),
      current_(std::move(current)),
      rt_(rt),
      snapshots_(snapshots),
      health_(health),
      checker_(checker),
      access_log_(access_log),
      generation_(snapshots.current()->generation),
      started_ms_(monotonic_ms()),
      wake_(std::make_shared<Wake>()),
      stamps_(std::move(stamps)) {
  if (!current_.users.empty()) cost_hash_ = current_.users.front().password_hash;  // daemon did it
}

Management::~Management() {
  // A job is bounded (a probe by health_check.timeout_ms, a hash by its cost); its thread only
  // touches its own outcome.
  for (ThreadJob& j : jobs_)
    if (j.thread.joinable()) j.thread.join();
  for (auto& [fd, c] : clients_) close(fd);
  if (control_fd_ >= 0) {
    close(control_fd_);
    unlink(control_path_.c_str());
  }
  if (metrics_fd_ >= 0) close(metrics_fd_);
  if (sigfd_ >= 0) close(sigfd_);
  if (epfd_ >= 0) close(epfd_);
}

bool Management::open() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&sigs, s);
  sigfd_ = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
  epoll_event ev{EPOLLIN, {.fd = sigfd_}};
  epoll_ctl(epfd_, EPOLL_CTL_ADD, sigfd_, &ev);
  epoll_event wev{EPOLLIN, {.fd = wake_->fd}};
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_->fd, &wev);
  return open_usage() && open_control_socket(current_.config.control_socket) &&
         open_metrics(current_.config.metrics_listen, current_.config.metrics_listen_written);
}

bool Management::open_control_socket(const std::string& path) {
  if (control_fd_ >= 0 && path == control_path_) return true;
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (!mkdirs(dir, 0700)) {
    UP_ERROR("control.socket: cannot create %s: %s", dir.c_str(), strerror(errno));
    return false;
  }
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    UP_ERROR("control.socket: %s is longer than %zu bytes", path.c_str(), sizeof sun.sun_path - 1);
    return false;
  }
  memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  // A socket file left by a daemon that died is replaced; a live one is another daemon.
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0) {
    UP_ERROR("control.socket: %s is served by another uringproxy; stop it or pick another path",
             path.c_str());
    close(fd);
    return false;
  }
  unlink(path.c_str());
  mode_t old = umask(077);  // the socket is created 0600: only the owner may control us
  int r = bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  umask(old);
  if (r != 0 || listen(fd, 64) != 0) {
    UP_ERROR("control.socket: cannot listen on %s: %s", path.c_str(), strerror(errno));
    close(fd);
    return false;
  }
  chmod(path.c_str(), 0600);
  if (control_fd_ >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, control_fd_, nullptr);
    close(control_fd_);
    unlink(control_path_.c_str());
  }
  control_fd_ = fd;
  control_path_ = path;
  epoll_event ev{EPOLLIN, {.fd = fd}};
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  UP_INFO("control socket %s", path.c_str());
  return true;
}

bool Management::open_metrics(const std::optional<SocketAddress>& where, bool written) {
  std::string text = where ? where->text : std::string();
  if (text == metrics_text_ && (metrics_fd_ >= 0 || text.empty())) return true;
  int fd = -1;
  if (where) {
    const sockaddr* sa = reinterpret_cast<const sockaddr*>(&where->addr);
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, sa, where->len) != 0 || listen(fd, 64) != 0) {
      int e = errno;
      close(fd);
      if (written) {
        UP_ERROR("metrics.listen: cannot listen on %s: %s", text.c_str(), strerror(e));
        return false;
      }
      // The operator never asked for metrics: a taken default port is no reason not to proxy.
      // Tried again at the next reload.
      UP_WARN("metrics: the default address %s is not available (%s); serving no metrics. "
              "Set metrics.listen to a free address, or \"\" to turn metrics off",
              text.c_str(), strerror(e));
      fd = -1;
    } else {
      epoll_event ev{EPOLLIN, {.fd = fd}};
      epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
      UP_INFO("metrics on http://%s/metrics", text.c_str());
    }
  }
  if (metrics_fd_ >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, metrics_fd_, nullptr);
    close(metrics_fd_);
  }
  metrics_fd_ = fd;
  metrics_text_ = text;
  return true;
}

uint32_t Management::run() {
  uint64_t last_reclaim = monotonic_ms();
  uint64_t last_ticket_rotation = last_reclaim;
  for (;;) {
    epoll_event evs[32];
    // While the users' records are not all cached, the loop does not sleep: it caches a batch
    // per turn between requests, so the first edit does not serialise every user.
    bool caching = !store_ && !current_.config.users_file.empty() &&
                   user_records_.size() < current_.users.size();
    // Quotas are checked every store.flush_interval_ms: the loop wakes at least that often.
    int wait_ms = static_cast<int>(std::min<uint32_t>(250, current_.config.store.flush_interval_ms));
    int n = epoll_wait(epfd_, evs, 32, caching ? 0 : wait_ms);
    uint64_t now = monotonic_ms();
    bool store_ready = false;
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == sigfd_) {
        signalfd_siginfo si;
        while (read(sigfd_, &si, sizeof si) == sizeof si) {
          if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            UP_INFO("%s: draining tunnels for up to %u ms",
                    si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
                    current_.config.shutdown_grace_ms);
            save_usage_if_changed();
            return current_.config.shutdown_grace_ms;
          }
          if (si.ssi_signo == SIGHUP) {
            std::vector<std::string> errors;
            reload(errors, nullptr);
            std::string err;
            if (!access_log_.reopen(err)) UP_WARN("%s", err.c_str());
          }
        }
      } else if (fd == wake_->fd) {
        wake_->drain();
      } else if (fd == control_fd_) {
        accept_on(fd, false);
      } else if (fd == metrics_fd_) {
        accept_on(fd, true);
      } else if (store_ && fd == store_fd_) {
        store_ready = true;
      } else {
        serve(fd, evs[i].events);
      }
    }
    if (store_) store_step(now, store_ready);
    finish_pending(monotonic_ms());
    if (now - last_flush_ms_ >= current_.config.store.flush_interval_ms) {
      last_flush_ms_ = now;
      flush_usage();
    }
    if (store_) prune_store_usage(now);
    if (caching) {
      cache_user_records(256);
      // Done: write the file once into the buffer, so its pages are touched now and not in
      // the first edit (20 MB of fresh pages cost that edit hundreds of ms on a busy VM).
      if (user_records_.size() == current_.users.size())
        users_json_from_records(user_records_, users_text_);
    }
    std::vector<int> idle;
    for (const auto& [fd, c] : clients_)  // last_ms may be after now
      if (!c.waiting && c.last_ms + (c.metrics ? metrics_idle_ms : control_idle_ms) < now)
        idle.push_back(fd);
    for (int fd : idle) close_client(fd);
    if (now - last_reclaim >= 1000) {
      snapshots_.reclaim();
      last_reclaim = now;
    }
    if (now - last_ticket_rotation >= uint64_t{ticket_key_rotation_seconds} * 1000) {
      listener_ticket_keys()->rotate();  // TLS listeners' session tickets: new key, keep one
      last_ticket_rotation = now;
    }
  }
}

void Management::cache_user_records(size_t batch) {
  size_t end = std::min(current_.users.size(), user_records_.size() + batch);
  user_records_.reserve(current_.users.size());
  for (size_t i = user_records_.size(); i < end; ++i)
    user_records_.push_back(user_json_record(current_.users[i]));
}

// --- clients ---------------------------------------------------------------------------------

void Management::accept_on(int listen_fd, bool metrics) {
  for (int k = 0; k < accepts_per_turn; ++k) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    size_t held = 0;
    for (const auto& [cfd, c] : clients_) held += c.metrics == metrics;
    if (held >= max_clients_per_kind && !evict_oldest_idle(metrics)) {
      close(fd);  // every one of them is waiting for an answer: bounded by the probe timeout
      continue;
    }
    Client c;
    c.id = ++next_client_id_;
    c.metrics = metrics;
    c.last_ms = monotonic_ms();
    c.armed = EPOLLIN;
    clients_.emplace(fd, std::move(c));
    epoll_event ev{EPOLLIN, {.fd = fd}};
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

bool Management::evict_oldest_idle(bool metrics) {
  int oldest = -1;
  uint64_t oldest_ms = UINT64_MAX;
  for (const auto& [fd, c] : clients_)
    if (c.metrics == metrics && !c.waiting && c.last_ms < oldest_ms) {
      oldest = fd;
      oldest_ms = c.last_ms;
    }
  if (oldest < 0) return false;
  close_client(oldest);
  return true;
}

void Management::close_client(int fd) {
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  clients_.erase(fd);
}

// A client is read only while it has no answer pending or unsent: one request at a time, in
// order, and a client that does not read its answers stops being read (no unbounded buffers).
// While an answer is being worked out nothing is armed; epoll still reports a hang-up.
void Management::arm(int fd, Client& c) {
  uint32_t want = c.waiting ? 0u : !c.out.empty() ? uint32_t{EPOLLOUT} : uint32_t{EPOLLIN};
  if (want == c.armed) return;
  epoll_event ev{want, {.fd = fd}};
  epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
  c.armed = want;
}

void Management::serve(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& c = it->second;
  if (c.waiting) return close_client(fd);  // only a hang-up or an error is reported now
  if (!c.out.empty()) {
    if (flush(fd, c)) advance(fd);
    return;
  }
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  char buf[16384];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return close_client(fd);
  if (n < 0) return;
  c.last_ms = monotonic_ms();
  c.in.append(buf, static_cast<size_t>(n));
  advance(fd);
}

// Serves the client's buffered requests until one has to wait (for the workers, a probe or
// the client reading its answer).
void Management::advance(int fd) {
  for (;;) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = it->second;
    if (c.waiting || !c.out.empty()) return arm(fd, c);
    if (c.metrics) return answer_http(fd, c);
    size_t nl = c.in.find('\n');
    if (nl == std::string::npos) {
      if (c.in.size() > max_request_bytes) {
        c.close_after = true;
        return deliver(fd, c.id, "{\"ok\":false,\"error\":\"" + request_too_long_error() + "\"}\n");
      }
      return arm(fd, c);
    }
    std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // An empty line is a request too: it gets the parser's refusal ("the document is empty").
    c.waiting = true;
    uint64_t id = c.id;
    handle(line, [this, fd, id](std::string answer) { deliver(fd, id, std::move(answer) + "\n"); });
  }
}

void Management::answer_http(int fd, Client& c) {
  if (c.in.find("\r\n\r\n") == std::string::npos) {
    if (c.in.size() > 8192) return close_client(fd);
    return arm(fd, c);
  }
  std::string line = c.in.substr(0, c.in.find("\r\n"));
  c.waiting = true;
  c.close_after = true;
  arm(fd, c);
  uint64_t id = c.id;
  if (line.rfind("GET /metrics ", 0) == 0 || line.rfind("GET /metrics?", 0) == 0) {
    render_metrics([this, fd, id](std::string body) {
      deliver(fd, id,
              http_response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body));
    });
  } else if (line.rfind("GET /healthz ", 0) == 0) {
    deliver(fd, id, http_response("200 OK", "text/plain", "ok\n"));
  } else {
    deliver(fd, id, http_response("404 Not Found", "text/plain", "try /metrics or /healthz\n"));
  }
}

// Hands an answer to client `id` (gone, or its fd reused, means nobody is waiting for it).
void Management::deliver(int fd, uint64_t id, std::string text) {
  auto it = clients_.find(fd);
  if (it == clients_.end() || it->second.id != id) return;
  Client& c = it->second;
  c.waiting = false;
  c.out += text;
  if (flush(fd, c)) resume_.push_back(fd);
}

// Sends what the socket takes; false when the client was closed (error, or done with it).
bool Management::flush(int fd, Client& c) {
  while (!c.out.empty()) {
    ssize_t n = send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      c.last_ms = monotonic_ms();
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      break;
    } else {
      close_client(fd);
      return false;
    }
  }
  if (c.out.empty() && c.close_after) {
    close_client(fd);
    return false;
  }
  arm(fd, c);
  return true;
}

// --- work finishing off this thread -----------------------------------------------------------

template <typename T>
void Management::ask_workers(std::function<T(Worker&)> fn,
                             std::function<void(std::vector<T>)> then) {
  struct Answers {
    std::mutex mu;  // a late worker may still write after `then` has read
    std::vector<T> out;
  };
  auto answers = std::make_shared<Answers>();
  answers->out.resize(rt_.workers.size());
  auto left = std::make_shared<std::atomic<size_t>>(rt_.workers.size());
  for (size_t i = 0; i < rt_.workers.size(); ++i) {
    Worker* w = rt_.workers[i].get();
    w->mailbox().post([answers, left, wake = wake_, i, w, fn] {
      T r = fn(*w);
      {
        std::lock_guard lock(answers->mu);
        answers->out[i] = std::move(r);
      }
      if (left->fetch_sub(1) == 1) wake->notify();
    });
  }
  asks_.push_back({left, monotonic_ms() + worker_answer_ms, [answers, then = std::move(then)] {
                     std::vector<T> out;
                     {
                       std::lock_guard lock(answers->mu);
                       out = answers->out;
                     }
                     then(std::move(out));
                   }});
}
// control_commands.cpp asks for these.
template void Management::ask_workers<uint64_t>(std::function<uint64_t(Worker&)>,
                                                std::function<void(std::vector<uint64_t>)>);
template void Management::ask_workers<std::vector<uint64_t>>(
    std::function<std::vector<uint64_t>(Worker&)>,
    std::function<void(std::vector<std::vector<uint64_t>>)>);
template void Management::ask_workers<std::vector<ConnectionInfo>>(
    std::function<std::vector<ConnectionInfo>(Worker&)>,
    std::function<void(std::vector<std::vector<ConnectionInfo>>)>);

void Management::off_thread(std::function<std::string()> work,
                            std::function<void(std::string)> then, std::string if_no_thread) {
  auto outcome = std::make_shared<ThreadJob::Outcome>();
  std::thread t;
  try {
    t = std::thread([work = std::move(work), outcome, wake = wake_] {
      outcome->result = work();
      outcome->done.store(true, std::memory_order_release);
      wake->notify();
    });
  } catch (const std::system_error& e) {
    UP_ERROR("cannot start a thread: %s", e.what());
    return then(std::move(if_no_thread));
  }
  jobs_.push_back({outcome, std::move(then), std::move(t)});
}

void Management::probe_async(std::shared_ptr<const Upstream> u,
                             std::function<void(std::string)> then) {
  std::string target = current_.config.health_check.target;
  uint32_t timeout_ms = current_.config.health_check.timeout_ms;
  off_thread([u, target, timeout_ms] { return probe_upstream(*u, target, timeout_ms); },
             std::move(then), "cannot start a probe thread (see the daemon's log)");
}

// Runs the continuations whose results are in (or whose workers ran out of time), then serves
// the next request of every client that got its answer off-turn.
void Management::finish_pending(uint64_t now) {
  std::vector<WorkerAsk> asks;
  asks.swap(asks_);
  for (WorkerAsk& a : asks) {
    size_t left = a.left->load();
    if (left != 0 && now < a.deadline_ms) {
      asks_.push_back(std::move(a));  // continuations below may add more: order does not matter
      continue;
    }
    if (left != 0)
      UP_WARN("%zu worker(s) did not answer within %llu ms; answering without them", left,
              static_cast<unsigned long long>(worker_answer_ms));
    a.then();
  }
  std::list<ThreadJob> done;
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    auto next = std::next(it);
    if (it->outcome->done.load(std::memory_order_acquire)) done.splice(done.end(), jobs_, it);
    it = next;
  }
  for (ThreadJob& j : done) {
    j.thread.join();  // it has finished: setting done is its last act but the wake-up
    j.then(std::move(j.outcome->result));
  }
  std::vector<int> resume;
  resume.swap(resume_);
  for (int fd : resume) advance(fd);
}

// --- configuration changes ------------------------------------------------------------------

std::unique_ptr<Snapshot> Management::prepare(const ConfigSet& next,
                                              std::vector<std::string>& errors) {
  // A new listen address must be free before anything changes (ours are shared: REUSEPORT).
  for (size_t i = 0; i < next.config.listeners.size(); ++i) {
    const ListenerConfig& l = next.config.listeners[i];
    if (l.tls || l.protocol == Protocol::vless) continue;
    const sockaddr* sa = reinterpret_cast<const sockaddr*>(&l.listen.addr);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, sa, l.listen.len) != 0)
      errors.push_back(config_path_ + ": listeners[" + std::to_string(i) + "] (" + l.name +
                       "): cannot listen on " + l.listen.text + ": " + strerror(errno) +
                       " (pick a free address)");
    close(fd);
  }
  if (!errors.empty()) return nullptr;
  return build_snapshot(next, generation_ + 1, health_, *rt_.users, errors);
}

Management::Changes Management::changes_to(const ConfigSet& next) const {
  Changes ch;
  // Credentials that changed or went away: their tunnels close now (docs/control-protocol.md).
  std::unordered_map<std::string_view, const User*> by_name;
  by_name.reserve(next.users.size());
  for (const User& u : next.users) by_name.emplace(u.username, &u);
  for (const User& old : current_.users) {
    auto it = by_name.find(old.username);
    if (it == by_name.end() || (old.enabled && !it->second->enabled) ||
        it->second->password_hash != old.password_hash)
      ch.kick.push_back(old.username);
  }
  ch.listeners = next.config.listeners.size() != current_.config.listeners.size();
  for (size_t i = 0; !ch.listeners && i < next.config.listeners.size(); ++i) {
    const auto& a = next.config.listeners[i];
    const auto& b = current_.config.listeners[i];
    ch.listeners = a.name != b.name || a.listen.text != b.listen.text ||
                   a.protocol != b.protocol || a.tls.has_value() != b.tls.has_value();
  }
  return ch;
}

void Management::commit(std::unique_ptr<Snapshot> snap, ConfigSet next, Committed then) {
  Changes ch = changes_to(next);
  // A reload mostly reads back the users it had: a cached record stays where the user at its
  // index is unchanged, so the first edit after a reload of 100,000 users does not serialise
  // them all again (~0.5 s). Changed users' records are made now; the rest stay lazy.
  size_t cached = store_ ? 0 : std::min(user_records_.size(), next.users.size());
  user_records_.resize(cached);
  for (size_t i = 0; i < cached; ++i)
    if (!config::same_user(next.users[i], current_.users[i]))
      user_records_[i] = user_json_record(next.users[i]);
  std::vector<Agent> agents_before = std::move(current_.agents);
  current_ = std::move(next);
  publish(std::move(snap), std::move(ch), std::move(then));
  close_ended_agent_links(agents_before);
}

void Management::publish(std::unique_ptr<Snapshot> snap, Changes ch, Committed then) {
  ++generation_;
  snapshots_.publish(std::move(snap));
  checker_.update(*snapshots_.current());
  if (ch.only_user) {
    auto at = std::find_if(current_.users.begin(), current_.users.end(),
                           [&](const User& u) { return u.username == *ch.only_user; });
    refresh_quota_of(*ch.only_user, at != current_.users.end() ? &*at : nullptr);
  } else {
    refresh_quotas();
  }
  if (current_.config.limits.max_connections)
    rt_.max_connections.store(current_.config.limits.max_connections);
  // Hashing the dummy takes as long as a login (up to ~100 ms): only when the model changed.
  if (!current_.users.empty() && current_.users.front().password_hash != cost_hash_) {
    cost_hash_ = current_.users.front().password_hash;
    rt_.verifier->match_cost_of(cost_hash_);
  }
  open_control_socket(current_.config.control_socket);
  open_metrics(current_.config.metrics_listen, current_.config.metrics_listen_written);
  uint64_t generation = generation_;
  if (!ch.listeners && ch.kick.empty()) {
    if (then) then(generation, 0);
    return;
  }
  auto kick = std::make_shared<const std::vector<std::string>>(std::move(ch.kick));
  bool listeners = ch.listeners;
  ask_workers<std::vector<size_t>>(
      [kick, listeners](Worker& w) {
        if (listeners) w.sync_listeners();
        std::vector<size_t> closed;
        closed.reserve(kick->size());
        for (const auto& u : *kick) closed.push_back(w.kick(u, Result::kicked));
        return closed;
      },
      [kick, generation, then](std::vector<std::vector<size_t>> per_worker) {
        size_t total = 0;
        for (size_t j = 0; j < kick->size(); ++j) {
          size_t n = 0;
          for (const auto& closed : per_worker)
            if (j < closed.size()) n += closed[j];  // empty: that worker did not answer
          if (n) UP_INFO("closed %zu tunnel(s) of user %s", n, (*kick)[j].c_str());
          total += n;
        }
        if (then) then(generation, total);
      });
}

bool Management::reload(std::vector<std::string>& errors, Committed then) {
  ConfigStamps stamps = ConfigStamps::take(config_path_);
  ConfigSet next;
  Diagnostics d;
  bool ok = load_config_set(config_path_, next, d) && d.ok();
  if (ok && (next.config.store.type == StoreConfig::Type::postgres) != static_cast<bool>(store_)) {
    d.errors.push_back(config_path_ + ": store.type changed; restart uringproxy to change stores");
    ok = false;
  }
  if (ok && store_) {
    // Users, upstreams, agents and the store's groups stay as last read; the store is read
    // again.
    file_groups_ = next.config.groups;
    for (const auto& [name, g] : current_.config.groups)
      if (!next.config.groups.count(name)) next.config.groups[name] = g;
    next.users = current_.users;
    next.proxies = current_.proxies;
    next.agents = current_.agents;
    store_->resync();
  }
  for (const auto& w : d.warnings) UP_WARN("%s", w.c_str());
  errors = d.errors;
  std::unique_ptr<Snapshot> snap;
  if (ok) snap = prepare(next, errors);
  if (!snap) {
    for (const auto& e : errors) UP_ERROR("%s", e.c_str());
    UP_ERROR("reload refused (%zu error(s)); still serving generation %llu", errors.size(),
             static_cast<unsigned long long>(generation_));
    return false;
  }
  size_t users = next.users.size();
  stamps_ = stamps.describes(next) ? std::move(stamps) : ConfigStamps{};
  commit(std::move(snap), std::move(next), std::move(then));
  UP_INFO("reloaded: generation %llu, %zu user(s)", static_cast<unsigned long long>(generation_),
          users);
  return true;
}

// --- workers ---------------------------------------------------------------------------------

void Management::kick_everywhere(const std::string& user, Result why,
                                 std::function<void(size_t)> then) {
  ask_workers<size_t>([user, why](Worker& w) { return w.kick(user, why); },
                      [user, then](std::vector<size_t> closed) {
                        size_t n = 0;
                        for (size_t k : closed) n += k;
                        if (n) UP_INFO("closed %zu tunnel(s) of user %s", n, user.c_str());
                        then(n);
                      });
}

void Management::collect_stats(std::function<void(WorkerStats)> then) {
  ask_workers<WorkerStats>([](Worker& w) { return w.stats(); },
                           [then](std::vector<WorkerStats> per_worker) {
                             WorkerStats total;
                             for (const WorkerStats& s : per_worker) total.merge(s);
                             then(std::move(total));
                           });
}

}  // namespace up
