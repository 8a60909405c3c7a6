// The control socket client: a blocking Unix stream socket driven with poll() against a single
// deadline, so a daemon that accepts but never answers cannot hang the caller.
#include "ctl/control_client.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

namespace up::ctl {
namespace {

constexpr size_t kMaxAnswer = size_t{256} << 20;  // a sanity cap: a huge user list still fits

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string connect_hint(int err) {
  if (err == EACCES || err == EPERM)
    return " (the socket is mode 0600: run uringproxyctl as the daemon's user)";
  return " (is uringproxy running? is control.socket right?)";
}

// Waits for `events` on fd until the deadline; false with `error` on timeout or failure.
bool wait_for(int fd, short events, int64_t deadline, const char* what, std::string& error) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      error = std::string("no answer from the daemon within the timeout (") + what + ")";
      return false;
    }
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, static_cast<int>(left > 1000000 ? 1000000 : left));
    if (n < 0) {
      if (errno == EINTR) continue;
      error = std::string("poll: ") + strerror(errno);
      return false;
    }
    if (n > 0) return true;
  }
}

}  // namespace

bool exchange(const std::string& socket_path, const std::string& request, int timeout_ms,
              Exchange& out) {
  const int64_t deadline = now_ms() + timeout_ms;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(sa.sun_path)) {
    out.error = "cannot connect to " + socket_path + ": the path is " +
                (socket_path.empty() ? "empty" : "longer than a Unix socket address allows (" +
                                                     std::to_string(sizeof(sa.sun_path) - 1) +
                                                     " bytes)");
    return false;
  }
  memcpy(sa.sun_path, socket_path.data(), socket_path.size());

  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    out.error = std::string("socket: ") + strerror(errno);
    return false;
  }
  // A daemon whose accept queue is full would block connect(); SO_SNDTIMEO bounds it.
  timeval tv{};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc;
  do {
    rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    out.error = "cannot connect to " + socket_path + ": " + strerror(err) + connect_hint(err);
    return false;
  }

  std::string line = request;
  line.push_back('\n');
  size_t sent = 0;
  while (sent < line.size()) {
    if (!wait_for(fd.get(), POLLOUT, deadline, "sending the request", out.error)) return false;
    ssize_t n = send(fd.get(), line.data() + sent, line.size() - sent,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      out.error = "sending to " + socket_path + ": " + strerror(errno);
      explicit_bzero(line.data(), line.size());
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  explicit_bzero(line.data(), line.size());  // the request may hold a password

  std::string buf;
  char chunk[65536];
  for (;;) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos) {
      buf.resize(nl);
      if (!buf.empty() && buf.back() == '\r') buf.pop_back();
      out.answer = std::move(buf);
      return true;
    }
    if (!wait_for(fd.get(), POLLIN, deadline, "waiting for the answer", out.error)) return false;
    ssize_t n = recv(fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      out.error = "reading from " + socket_path + ": " + strerror(errno);
      return false;
    }
    if (n == 0) {
      out.error = "the daemon closed the control connection without an answer" +
                  std::string(buf.empty() ? "" : " (partial line received)");
      return false;
    }
    buf.append(chunk, static_cast<size_t>(n));
    if (buf.size() > kMaxAnswer) {
      out.error = "the daemon's answer is longer than " + std::to_string(kMaxAnswer >> 20) +
                  " MiB without a newline";
      return false;
    }
  }
}

}  // namespace up::ctl
