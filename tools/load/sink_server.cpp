#include "sink_server.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_set>

#include "proxy_client.h"

namespace uload {
namespace {

struct Conn {
  int fd = -1;
  char mode = 0;
  bool want_out = false;
  uint64_t echoed = 0;
  std::string pending;  // echo bytes not yet sent
  std::string head;     // 'G': the start of a request head not yet complete
};

constexpr size_t kBuf = 1 << 20;

}  // namespace

bool SinkServer::start(const sockaddr_storage& addr, socklen_t len, int threads, int msg,
                       std::string& err) {
  msg_ = msg;
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; i++) {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    set_nodelay(fd);  // accepted sockets inherit it: one syscall less per connection
    if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) < 0 || listen(fd, 4096) < 0) {
      err = std::string("target listen on ") + format_addr(addr) + ": " + strerror(errno);
      close(fd);
      return false;
    }
    listeners_.push_back(fd);
  }
  for (int fd : listeners_) threads_.emplace_back([this, fd] { run(fd); });
  return true;
}

void SinkServer::stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
  for (int fd : listeners_) close(fd);
  listeners_.clear();
}

void SinkServer::run(int lfd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unique_ptr<char[]> buf(new char[kBuf]);
  std::unique_ptr<char[]> src(new char[kBuf]);
  memset(src.get(), 'x', kBuf);
  std::unordered_set<Conn*> all;  // freed at exit
  const std::string http_response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                                    std::to_string(msg_) + "\r\n\r\n" + std::string(size_t(msg_), 'x');
  epoll_event evs[256];

  // close() drops the fd from the epoll set (it is never duplicated).
  auto close_conn = [&](Conn* c) {
    close(c->fd);
    c->fd = -1;
    open_.fetch_sub(1, std::memory_order_relaxed);
  };
  // Write interest only when something waits to be written: saves a wakeup per connection.
  auto want_out = [&](Conn* c) -> bool {
    if (!c->want_out) {
      c->want_out = true;
      epoll_event ce{};
      ce.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ce.data.ptr = c;
      epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
    }
    return true;
  };
  // Returns false if the connection was closed.
  auto flush = [&](Conn* c) -> bool {
    while (!c->pending.empty()) {
      ssize_t n = send(c->fd, c->pending.data(), c->pending.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) return want_out(c);
        close_conn(c);
        return false;
      }
      c->pending.erase(0, size_t(n));
    }
    if (c->mode == 'E' && c->echoed >= uint64_t(msg_)) {
      close_conn(c);  // the target closes first
      return false;
    }
    return true;
  };

  std::vector<Conn*> dead;
  while (!stop_.load(std::memory_order_relaxed)) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == nullptr) {
        for (int k = 0; k < 256; k++) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          Conn* c = new Conn();
          c->fd = fd;
          all.insert(c);
          open_.fetch_add(1, std::memory_order_relaxed);
          epoll_event ce{};
          ce.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
          ce.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
        continue;
      }
      Conn* c = static_cast<Conn*>(evs[i].data.ptr);
      if (c->fd < 0) continue;
      uint32_t e = evs[i].events;
      if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        bool open = true;
        while (open) {
          ssize_t r = recv(c->fd, buf.get(), kBuf, 0);
          if (r < 0) {
            if (errno == EAGAIN) break;
            close_conn(c);
            open = false;
            break;
          }
          if (r == 0) {
            close_conn(c);
            open = false;
            break;
          }
          if (!c->mode) c->mode = buf[0];
          if (c->mode == 'G') {
            // A fixed-response HTTP origin: one answer per request head (no request bodies).
            c->head.append(buf.get(), size_t(r));
            size_t at = 0, end;
            while ((end = c->head.find("\r\n\r\n", at)) != std::string::npos) {
              c->pending += http_response;
              at = end + 4;
            }
            c->head.erase(0, at);
            if (!flush(c)) { open = false; break; }
          } else if (c->mode == 'E' || c->mode == 'P') {
            c->pending.append(buf.get(), size_t(r));
            c->echoed += uint64_t(r);
            if (!flush(c)) { open = false; break; }
          }
        }
        if (!open) { dead.push_back(c); continue; }
      }
      if (c->mode == 'D') {
        for (;;) {
          ssize_t r = send(c->fd, src.get(), kBuf, MSG_NOSIGNAL);
          if (r < 0) {
            if (errno != EAGAIN) { close_conn(c); dead.push_back(c); }
            else want_out(c);
            break;
          }
        }
      } else if ((e & EPOLLOUT) && !c->pending.empty()) {
        if (!flush(c)) dead.push_back(c);
      }
    }
    // Closed connections are freed after the batch (epoll reports each fd once per wait).
    for (Conn* c : dead) {
      all.erase(c);
      delete c;
    }
    dead.clear();
  }
  for (Conn* c : all) {
    if (c->fd >= 0) close(c->fd);
    delete c;
  }
  close(ep);
}

}  // namespace uload
