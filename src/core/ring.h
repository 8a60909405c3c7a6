#pragma once
// One io_uring per worker: set-up with the cheapest task-run mode the kernel offers, and a
// start-up probe that names every opcode uringproxy needs and which of them are missing.
#include <liburing.h>

#include <string>

namespace up {

struct RingFeatures {
  bool defer_taskrun = false;
  bool multishot_accept = false;
  std::string missing;  // opcodes we need that the kernel lacks, for the log
};

// Probes once (process-wide) and logs what is missing; false if a required opcode is absent.
bool probe_ring_features(RingFeatures& out);

// Sets up `ring` with `entries` SQEs; tries SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN,
// then plain. Returns 0 or -errno.
int setup_ring(io_uring& ring, unsigned entries, RingFeatures& features);

// Returns an SQE, submitting pending ones first if the queue is full.
io_uring_sqe* get_sqe(io_uring& ring);

}  // namespace up
