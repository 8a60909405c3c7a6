#include "core/access_log.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

up::AccessRecord record(const std::string& target) {
  return up::AccessRecord{"alice", "", "127.0.0.1:1", target, "direct", 1, 2, 3, "ok"};
}

std::string temp_dir() {
  char tmpl[] = "/tmp/uringproxy-access-log-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  return tmpl;
}

// Reads everything until every writer has closed the FIFO.
std::string read_to_eof(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      return out;
    } else {
      pollfd p{fd, POLLIN, 0};
      poll(&p, 1, 100);
    }
  }
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < s.size()) {
    size_t nl = s.find('\n', at);
    REQUIRE(nl != std::string::npos);  // no partial last line
    out.push_back(s.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("access log: a log that does not drain never blocks the writer; the excess is counted") {
  std::string dir = temp_dir();
  std::string fifo = dir + "/log";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  int rd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(rd >= 0);
  const int total = 20000;  // ~2.5 MB of lines: far more than the pipe and the buffers hold
  std::string got;
  std::thread reader;
  uint64_t dropped = 0;
  {
    up::AccessLog log(2, 64 * 1024);
    std::string err;
    REQUIRE(log.open(fifo, err));
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < total; ++i) log.write(i % 2, record("seq-" + std::to_string(i)));
    // Nobody reads the FIFO yet, so the writer thread is stuck in write(2); the callers are
    // not: 20,000 lines take milliseconds when nothing blocks.
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    dropped = log.dropped();
    CHECK(dropped > 0);
    reader = std::thread([&] { got = read_to_eof(rd); });
  }  // the destructor writes out what is buffered, then closes: the reader sees EOF
  reader.join();
  close(rd);
  std::vector<std::string> lines = split_lines(got);
  CHECK(lines.size() + dropped == static_cast<size_t>(total));
  // Whole lines, and each writer's in the order it wrote them.
  int last[2] = {-1, -1};
  for (const std::string& ln : lines) {
    REQUIRE(ln.front() == '{');
    REQUIRE(ln.back() == '}');
    size_t at = ln.find("\"target\":\"seq-");
    REQUIRE(at != std::string::npos);
    int seq = std::atoi(ln.c_str() + at + 14);
    CHECK(seq > last[seq % 2]);
    last[seq % 2] = seq;
  }
  unlink(fifo.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("access log: flush() writes every buffered line, in order") {
  std::string dir = temp_dir();
  std::string path = dir + "/access.log";
  {
    up::AccessLog log(1);
    std::string err;
    REQUIRE(log.open(path, err));
    for (int i = 0; i < 1000; ++i) log.write(0, record("seq-" + std::to_string(i)));
    log.flush();
    int fd = open(path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    std::string got = read_to_eof(fd);
    close(fd);
    std::vector<std::string> lines = split_lines(got);
    REQUIRE(lines.size() == 1000);
    for (int i = 0; i < 1000; ++i)
      CHECK(lines[i].find("\"target\":\"seq-" + std::to_string(i) + "\"") != std::string::npos);
    CHECK(log.dropped() == 0);
  }
  unlink(path.c_str());
  rmdir(dir.c_str());
}
