#include "control/management.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>

#include "auth/password_verifier.h"
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

namespace up {

namespace {
constexpr uint64_t idle_client_ms = 30000;

bool mkdirs(const std::string& dir, mode_t mode) {
  if (dir.empty() || dir == "/") return true;
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode);
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0 && !mkdirs(dir.substr(0, slash), mode)) return false;
  return mkdir(dir.c_str(), mode) == 0 || errno == EEXIST;
}
}  // namespace

Management::Management(std::string config_path, ConfigSet current, Runtime& rt,
                       SnapshotStore& snapshots, HealthBoard& health, HealthChecker& checker,
                       AccessLog& access_log)
    : config_path_(std::move(config_path)),
      current_(std::move(current)),
      rt_(rt),
      snapshots_(snapshots),
      health_(health),
      checker_(checker),
      access_log_(access_log),
      generation_(snapshots.current()->generation),
      started_ms_(monotonic_ms()) {}

Management::~Management() {
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
  return open_control_socket(current_.config.control_socket) &&
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
    int n = epoll_wait(epfd_, evs, 32, 250);
    uint64_t now = monotonic_ms();
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == sigfd_) {
        signalfd_siginfo si;
        while (read(sigfd_, &si, sizeof si) == sizeof si) {
          if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            UP_INFO("%s: draining tunnels for up to %u ms",
                    si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
                    current_.config.shutdown_grace_ms);
            return current_.config.shutdown_grace_ms;
          }
          if (si.ssi_signo == SIGHUP) {
            std::vector<std::string> errors;
            reload(errors);
            std::string err;
            if (!access_log_.reopen(err)) UP_WARN("%s", err.c_str());
          }
        }
      } else if (fd == control_fd_) {
        accept_on(fd, false);
      } else if (fd == metrics_fd_) {
        accept_on(fd, true);
      } else {
        serve(fd);
      }
    }
    std::vector<int> idle;
    for (const auto& [fd, c] : clients_)
      if (c.last_ms + idle_client_ms < now) idle.push_back(fd);  // last_ms may be after now
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

void Management::accept_on(int listen_fd, bool metrics) {
  for (;;) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (clients_.size() >= 256) {  // bounded: a flood of idle clients cannot exhaust fds
      close(fd);
      continue;
    }
    Client c;
    c.metrics = metrics;
    c.last_ms = monotonic_ms();
    clients_.emplace(fd, std::move(c));
    epoll_event ev{EPOLLIN, {.fd = fd}};
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

void Management::close_client(int fd) {
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  clients_.erase(fd);
}

namespace {
// Answers are small; a client that does not read them within a second is dropped.
bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  uint64_t deadline = monotonic_ms() + 1000;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EAGAIN && monotonic_ms() < deadline) {
      usleep(1000);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}
}  // namespace

void Management::serve(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  char buf[16384];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return close_client(fd);
  if (n < 0) return;
  Client& c = it->second;
  c.last_ms = monotonic_ms();
  c.in.append(buf, static_cast<size_t>(n));
  if (c.metrics) {
    size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c.in.size() > 8192) close_client(fd);
      return;
    }
    std::string line = c.in.substr(0, c.in.find("\r\n"));
    std::string body, status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8";
    if (line.rfind("GET /metrics ", 0) == 0 || line.rfind("GET /metrics?", 0) == 0) {
      body = render_metrics();
    } else if (line.rfind("GET /healthz ", 0) == 0) {
      body = "ok\n";
      type = "text/plain";
    } else {
      status = "404 Not Found";
      body = "try /metrics or /healthz\n";
      type = "text/plain";
    }
    std::string resp = "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                       "\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n" + body;
    write_all(fd, resp);
    return close_client(fd);
  }
  size_t nl;
  while ((nl = c.in.find('\n')) != std::string::npos) {
    std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::string answer = handle(line) + "\n";
    if (!write_all(fd, answer)) return close_client(fd);
    if (clients_.find(fd) == clients_.end()) return;
  }
  if (c.in.size() > max_request_bytes) {
    write_all(fd, "{\"ok\":false,\"error\":\"" + request_too_long_error() + "\"}\n");
    close_client(fd);
  }
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

size_t Management::commit(std::unique_ptr<Snapshot> snap, ConfigSet next) {
  ++generation_;
  snapshots_.publish(std::move(snap));
  checker_.update(*snapshots_.current());
  // Credentials that changed or went away: their tunnels close now (DESIGN 2.6).
  std::vector<std::string> kick;
  for (const User& old : current_.users) {
    auto it = std::find_if(next.users.begin(), next.users.end(),
                           [&](const User& u) { return u.username == old.username; });
    if (it == next.users.end() || (old.enabled && !it->enabled) ||
        it->password_hash != old.password_hash)
      kick.push_back(old.username);
  }
  bool listeners_changed = next.config.listeners.size() != current_.config.listeners.size();
  for (size_t i = 0; !listeners_changed && i < next.config.listeners.size(); ++i) {
    const auto& a = next.config.listeners[i];
    const auto& b = current_.config.listeners[i];
    listeners_changed = a.name != b.name || a.listen.text != b.listen.text ||
                        a.protocol != b.protocol || a.tls.has_value() != b.tls.has_value();
  }
  if (next.config.limits.max_connections)
    rt_.max_connections.store(next.config.limits.max_connections);
  current_ = std::move(next);
  if (!current_.users.empty()) rt_.verifier->match_cost_of(current_.users.front().password_hash);
  if (listeners_changed) sync_listeners();
  size_t closed = 0;
  for (const auto& u : kick) closed += kick_everywhere(u, Result::kicked);
  open_control_socket(current_.config.control_socket);
  open_metrics(current_.config.metrics_listen, current_.config.metrics_listen_written);
  return closed;
}

bool Management::reload(std::vector<std::string>& errors) {
  ConfigSet next;
  Diagnostics d;
  bool ok = load_config_set(config_path_, next, d) && d.ok();
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
  commit(std::move(snap), std::move(next));
  UP_INFO("reloaded: generation %llu, %zu user(s)", static_cast<unsigned long long>(generation_),
          users);
  return true;
}

// --- workers ---------------------------------------------------------------------------------

template <typename T>
std::vector<T> Management::ask_workers(std::function<T(Worker&)> fn) {
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<T> out;
    size_t left;
  };
  auto p = std::make_shared<Pending>();
  p->out.resize(rt_.workers.size());
  p->left = rt_.workers.size();
  for (size_t i = 0; i < rt_.workers.size(); ++i) {
    Worker* w = rt_.workers[i].get();
    w->mailbox().post([p, i, w, fn] {
      T r = fn(*w);
      std::lock_guard lock(p->mu);
      p->out[i] = std::move(r);
      --p->left;
      p->cv.notify_all();
    });
  }
  std::unique_lock lock(p->mu);
  p->cv.wait_for(lock, std::chrono::seconds(5), [&] { return p->left == 0; });
  return p->out;
}

size_t Management::kick_everywhere(const std::string& user, Result why) {
  size_t n = 0;
  for (size_t k : ask_workers<size_t>([user, why](Worker& w) { return w.kick(user, why); }))
    n += k;
  if (n) UP_INFO("closed %zu tunnel(s) of user %s", n, user.c_str());
  return n;
}

WorkerStats Management::collect_stats() {
  WorkerStats total;
  for (const WorkerStats& s : ask_workers<WorkerStats>([](Worker& w) { return w.stats(); }))
    total.merge(s);
  return total;
}

std::vector<ConnectionInfo> Management::collect_connections(const std::string& user) {
  std::vector<ConnectionInfo> all;
  for (auto& v : ask_workers<std::vector<ConnectionInfo>>(
           [user](Worker& w) { return w.list_connections(user); }))
    all.insert(all.end(), std::make_move_iterator(v.begin()), std::make_move_iterator(v.end()));
  return all;
}

void Management::sync_listeners() {
  ask_workers<int>([](Worker& w) {
    w.sync_listeners();
    return 0;
  });
}

}  // namespace up
