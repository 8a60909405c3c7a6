#include "core/access_log.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace up {

namespace {
constexpr auto flush_every = std::chrono::milliseconds(100);
}  // namespace

AccessLog::AccessLog(unsigned writers, size_t buffer_bytes) : buffer_bytes_(buffer_bytes) {
  for (unsigned i = 0; i < std::max(1u, writers); ++i)
    buffers_.push_back(std::make_unique<Buffer>());
}

AccessLog::~AccessLog() {
  if (writer_.joinable()) {
    {
      std::lock_guard lock(wake_mu_);
      stop_ = true;
    }
    wake_.notify_one();
    writer_.join();  // its last turn writes out what the workers left
  }
  if (fd_ > 2) close(fd_);
}

bool AccessLog::open(const std::string& where, std::string& err) {
  where_ = where;
  if (where == "off") {
    fd_ = -1;
    return true;
  }
  if (where == "stderr") {
    fd_ = 2;
  } else {
    fd_ = ::open(where.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd_ < 0) {
      err = "access_log: cannot open " + where + ": " + strerror(errno);
      return false;
    }
  }
  struct stat st;
  atomic_appends_ = fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
  if (!writer_.joinable()) writer_ = std::thread([this] { run(); });
  return true;
}

bool AccessLog::reopen(std::string& err) {
  if (fd_ <= 2) return true;
  // Opened here, so the caller hears of a failure; swapped in by the writer thread after it has
  // written what was logged before the rotation into the old file. Waiting for that here would
  // hold the management thread behind a slow disk.
  int fd = ::open(where_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    err = "access_log: cannot reopen " + where_ + ": " + strerror(errno);
    return false;
  }
  {
    std::lock_guard lock(wake_mu_);
    if (next_fd_ >= 0) close(next_fd_);  // two SIGHUPs before the writer's turn: the later wins
    next_fd_ = fd;
  }
  wake_.notify_one();
  return true;
}

void AccessLog::flush() {
  if (fd_ < 0) return;
  std::lock_guard out(out_mu_);
  write_out();
}

uint64_t AccessLog::dropped() const {
  uint64_t n = 0;
  for (const auto& b : buffers_) n += b->dropped.load(std::memory_order_relaxed);
  return n;
}

void AccessLog::run() {
  pthread_setname_np(pthread_self(), "up-access-log");
  for (bool last = false; !last;) {
    int next_fd = -1;
    {
      std::unique_lock lock(wake_mu_);
      wake_.wait_for(lock, flush_every,
                     [this] { return stop_ || next_fd_ >= 0 || hurry_.load(); });
      hurry_.store(false);
      last = stop_;
      std::swap(next_fd, next_fd_);
    }
    std::lock_guard out(out_mu_);
    write_out();
    if (next_fd >= 0) {
      dup2(next_fd, fd_);  // fd_ now points at the reopened file
      close(next_fd);
    }
  }
}

void AccessLog::write_out() {
  for (auto& b : buffers_) {
    {
      std::lock_guard lock(b->mu);
      batch_.swap(b->lines);  // the worker goes on with an empty buffer (batch_'s capacity)
    }
    if (!batch_.empty()) write_all(*b);
    batch_.clear();
  }
}

void AccessLog::write_all(Buffer& b) {
  // A pipe or a terminal (stderr) interleaves writes longer than PIPE_BUF with other writers'
  // (the daemon's own log lines): write at most that much at once, cut at a line's end.
  size_t done = 0;
  while (done < batch_.size()) {
    size_t len = batch_.size() - done;
    if (!atomic_appends_ && len > PIPE_BUF) {
      size_t cut = batch_.rfind('\n', done + PIPE_BUF - 1);
      len = cut != std::string::npos && cut >= done ? cut + 1 - done
                                                     : batch_.find('\n', done) + 1 - done;
    }
    ssize_t n = ::write(fd_, batch_.data() + done, len);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd_, POLLOUT, 0};  // stderr may be non-blocking: wait here, on this thread
      poll(&p, 1, 1000);
    } else if (!(n < 0 && errno == EINTR)) {
      // Disk full, EIO, a closed pipe: the lines not written count as dropped.
      b.dropped.fetch_add(std::count(batch_.begin() + done, batch_.end(), '\n'),
                          std::memory_order_relaxed);
      return;
    }
  }
}

void AccessLog::append_escaped(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      // Non-ASCII is escaped byte-wise: the log stays valid JSON whatever a client sent.
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
}

void AccessLog::write(unsigned writer, const AccessRecord& r) {
  if (fd_ < 0) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char stamp[64];
  snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900,
           t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
  std::string line;
  line.reserve(256);
  line += "{\"ts\":\"";
  line += stamp;
  auto field = [&](const char* key, std::string_view v) {
    line += "\",\"";
    line += key;
    line += "\":\"";
    append_escaped(line, v);
  };
  line += "\",\"user\":";
  if (r.user.empty()) {
    line += "null";
  } else {
    line += '"';
    append_escaped(line, r.user);
    line += '"';
  }
  line += ",\"group\":";
  if (r.group.empty()) {
    line += "null";
  } else {
    line += '"';
    append_escaped(line, r.group);
    line += '"';
  }
  line += ",\"client\":\"";
  append_escaped(line, r.client);
  field("target", r.target);
  field("route", r.route);
  line += "\",\"bytes_up\":" + std::to_string(r.bytes_up);
  line += ",\"bytes_down\":" + std::to_string(r.bytes_down);
  line += ",\"duration_ms\":" + std::to_string(r.duration_ms);
  if (r.udp) {
    line += ",\"datagrams_up\":" + std::to_string(r.datagrams_up);
    line += ",\"datagrams_down\":" + std::to_string(r.datagrams_down);
  }
  line += ",\"result\":\"";
  append_escaped(line, r.result);
  line += "\"}\n";
  Buffer& b = *buffers_[writer % buffers_.size()];
  size_t size;
  {
    std::lock_guard lock(b.mu);
    if (b.lines.size() + line.size() > buffer_bytes_) {
      b.dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    b.lines += line;
    size = b.lines.size();
  }
  // A buffer filling fast is written now rather than at the next turn, well before it is full.
  if (size >= buffer_bytes_ / 4 && size - line.size() < buffer_bytes_ / 4) {
    hurry_.store(true);
    wake_.notify_one();
  }
}

}  // namespace up
