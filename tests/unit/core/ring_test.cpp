#include "core/ring.h"

#include <doctest/doctest.h>
#include <errno.h>
#include <string.h>

#include <chrono>

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
