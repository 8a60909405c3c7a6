#include "core/ring.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>

namespace {

io_uring tiny_ring(unsigned sq, unsigned cq, unsigned extra_flags = 0) {
  io_uring ring;
  io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE | extra_flags;
  p.cq_entries = cq;
  REQUIRE(io_uring_queue_init_params(sq, &ring, &p) == 0);
  return ring;
}

}  // namespace

TEST_CASE("get_sqe past a full CQ: every completion is kept, none lost or doubled") {
  // 4 SQEs, 8 CQEs, 40 requests and nobody reaping: what a mass kick does to a busy ring.
  io_uring ring = tiny_ring(4, 8);
  std::vector<up::Completion> spill;
  for (uint64_t i = 0; i < 40; ++i) {
    int err = 0;
    io_uring_sqe* s = up::get_sqe(ring, spill, err);
    REQUIRE(s);
    io_uring_prep_nop(s);
    io_uring_sqe_set_data64(s, i);
  }
  std::vector<up::Completion> rest;
  REQUIRE(up::submit_queued(ring, rest) == 0);
  // Overflowed completions are posted as the CQ empties.
  for (int turn = 0; turn < 20 && spill.size() + rest.size() < 40; ++turn) {
    io_uring_get_events(&ring);
    up::reap(ring, rest);
  }
  std::vector<int> seen(40, 0);
  for (const auto* v : {&spill, &rest})
    for (const up::Completion& c : *v) {
      REQUIRE(c.user_data < 40);
      CHECK(c.res == 0);
      ++seen[c.user_data];
    }
  for (int n : seen) CHECK(n == 1);
  io_uring_queue_exit(&ring);
}

TEST_CASE("get_sqe on a ring that refuses every submit gives up within seconds") {
  // A disabled ring answers every submit with -EBADFD: the old loop spun on it forever.
  io_uring ring = tiny_ring(2, 4, IORING_SETUP_R_DISABLED);
  std::vector<up::Completion> spill;
  int err = 0;
  auto t0 = std::chrono::steady_clock::now();
  io_uring_sqe* s = nullptr;
  for (int i = 0; i < 3 && (s = up::get_sqe(ring, spill, err)); ++i) io_uring_prep_nop(s);
  CHECK(s == nullptr);
  CHECK(err == -EBADFD);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  CHECK(spill.empty());
  io_uring_queue_exit(&ring);
}

namespace {

// A connected pair of loopback TCP sockets (the kind the relay reads from): {writer, reader}.
std::pair<int, int> tcp_pair() {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(l >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(bind(l, reinterpret_cast<sockaddr*>(&a), len) == 0);
  REQUIRE(listen(l, 1) == 0);
  REQUIRE(getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  int w = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(connect(w, reinterpret_cast<sockaddr*>(&a), len) == 0);
  int r = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(r >= 0);
  close(l);
  return {w, r};
}

void submit_recv(io_uring& ring, int fd, char* buf, unsigned cap, bool poll_first, uint64_t tag) {
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  io_uring_prep_recv(s, fd, buf, cap, 0);
  up::poll_first_if(s, poll_first);
  io_uring_sqe_set_data64(s, tag);
  REQUIRE(io_uring_submit(&ring) == 1);
}

// Waits for one completion; -ETIME if none comes within `ns`.
int wait_one(io_uring& ring, up::Completion& c, long long ns = 5'000'000'000) {
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
  int r = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
  if (r == 0) {
    c = {cqe->user_data, cqe->res, cqe->flags};
    io_uring_cqe_seen(&ring, cqe);
  }
  return r;
}

up::Completion recv_once(io_uring& ring, int fd, char* buf, unsigned cap, bool poll_first) {
  submit_recv(ring, fd, buf, cap, poll_first, 7);
  up::Completion c{};
  REQUIRE(wait_one(ring, c) == 0);
  return c;
}

}  // namespace

TEST_CASE("recv on the ring: SOCK_NONEMPTY says bytes are left, POLL_FIRST waits for them") {
  // What Connection::recv_drained_ and the buffer relay's `drained` rely on (core/transport.cpp,
  // relay/buffer_relay.cpp): a CQE without IORING_CQE_F_SOCK_NONEMPTY means the socket is
  // empty, and a recv sent with IORING_RECVSEND_POLL_FIRST still returns bytes that are there
  // or arrive later.
  io_uring ring;
  up::RingFeatures features;
  REQUIRE(up::setup_ring(ring, 8, features) == 0);
  auto [w, r] = tcp_pair();
  char buf[128];
  REQUIRE(write(w, std::string(100, 'x').data(), 100) == 100);
  up::Completion c = recv_once(ring, r, buf, 40, false);
  CHECK(c.res == 40);
  CHECK((c.flags & IORING_CQE_F_SOCK_NONEMPTY) != 0);  // 60 bytes still there
  c = recv_once(ring, r, buf, sizeof buf, false);
  CHECK(c.res == 60);
  CHECK((c.flags & IORING_CQE_F_SOCK_NONEMPTY) == 0);  // drained

  if (features.recv_poll_first) {
    // Bytes already waiting: the poll finds them ready at once.
    REQUIRE(write(w, "ready", 5) == 5);
    c = recv_once(ring, r, buf, sizeof buf, true);
    CHECK(c.res == 5);
    // Nothing there yet: the recv waits for readiness, then reads what came.
    submit_recv(ring, r, buf, sizeof buf, true, 8);
    CHECK(wait_one(ring, c, 50'000'000) == -ETIME);  // still waiting
    REQUIRE(write(w, "later", 5) == 5);
    REQUIRE(wait_one(ring, c) == 0);
    CHECK(c.user_data == 8);
    CHECK(c.res == 5);
    CHECK(std::string_view(buf, 5) == "later");
  } else {
    MESSAGE("kernel without IORING_OP_SOCKET (< 5.19): uringproxy does not use POLL_FIRST here");
  }
  close(w);
  close(r);
  io_uring_queue_exit(&ring);
}
