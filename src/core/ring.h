#pragma once
// One io_uring per worker: set-up with the cheapest task-run mode the kernel offers, and a
// start-up probe that names every opcode uringproxy needs and which of them are missing.
#include <liburing.h>

#include <cstdint>
#include <string>
#include <vector>

namespace up {

struct RingFeatures {
  bool defer_taskrun = false;
  bool multishot_accept = false;
  // IORING_RECVSEND_POLL_FIRST on send/recv (5.19, with IORING_OP_SOCKET); an older kernel
  // may fail a recv that carries it with EINVAL, so it is only set where this holds.
  bool recv_poll_first = false;
  std::string missing;  // opcodes we need that the kernel lacks, for the log
};

// Probes once (process-wide) and logs what is missing; false if a required opcode is absent.
bool probe_ring_features(RingFeatures& out);

// Sets up `ring` with `entries` SQEs; tries SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN,
// then plain, and fills in what the ring can do. Returns 0 or -errno.
int setup_ring(io_uring& ring, unsigned entries, RingFeatures& features);

// After a recv's CQE: whether that recv emptied its socket, so the next recv on it should wait
// for readiness first (no IORING_CQE_F_SOCK_NONEMPTY; always false where the ring lacks
// POLL_FIRST).
inline bool recv_emptied(const RingFeatures& f, uint32_t cqe_flags) {
  return f.recv_poll_first && !(cqe_flags & IORING_CQE_F_SOCK_NONEMPTY);
}

// Marks a prepared recv to wait for readiness before reading, when its socket was emptied.
inline void poll_first_if(io_uring_sqe* sqe, bool emptied) {
  if (emptied) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
}

// A CQE copied out of the ring, so its slot is free before it is handled.
struct Completion {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
};

// Moves every ready CQE into `out` and frees their slots.
void reap(io_uring& ring, std::vector<Completion>& out);

// Submits every queued SQE. When the kernel takes none (-EBUSY: older kernels refuse while
// completions wait in their overflow list; -EAGAIN: short of memory), the ready CQEs move into
// `spill` for the caller to handle later, so the kernel can post the rest. A ring that still
// refuses after about a second of tries is broken: returns the last -errno (0 = all submitted).
int submit_queued(io_uring& ring, std::vector<Completion>& spill);

// Returns an SQE, submitting the queued ones (as above) if the queue is full; nullptr and
// `err` set if the ring is broken.
io_uring_sqe* get_sqe(io_uring& ring, std::vector<Completion>& spill, int& err);

}  // namespace up
