#include "core/ring.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

namespace up {

namespace {
struct Need {
  int op;
  const char* name;
  bool required;
};
// What the data plane uses. Multishot accept is an IORING_OP_ACCEPT flag (5.19); its absence
// is detected at first use and falls back to re-armed single accepts.
constexpr Need needs[] = {
    {IORING_OP_ACCEPT, "ACCEPT", true},     {IORING_OP_CONNECT, "CONNECT", true},
    {IORING_OP_RECV, "RECV", true},         {IORING_OP_SEND, "SEND", true},
    {IORING_OP_POLL_ADD, "POLL_ADD", true}, {IORING_OP_POLL_REMOVE, "POLL_REMOVE", true},
    {IORING_OP_TIMEOUT, "TIMEOUT", true},   {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL", true},
    {IORING_OP_READ, "READ", true},         {IORING_OP_CLOSE, "CLOSE", true},         {IORING_OP_SPLICE, "SPLICE", false},
    {IORING_OP_MSG_RING, "MSG_RING", false}, {IORING_OP_SEND_ZC, "SEND_ZC", false},
};
}  // namespace

bool probe_ring_features(RingFeatures& out) {
  io_uring_probe* probe = io_uring_get_probe();
  if (!probe) {
    UP_ERROR("io_uring is not available (io_uring_get_probe failed: kernel too old, or "
             "io_uring disabled by sysctl kernel.io_uring_disabled / seccomp)");
    return false;
  }
  bool ok = true;
  for (const Need& n : needs) {
    if (io_uring_opcode_supported(probe, n.op)) continue;
    if (!out.missing.empty()) out.missing += ", ";
    out.missing += n.name;
    if (n.required) ok = false;
  }
  io_uring_free_probe(probe);
  if (!out.missing.empty()) {
    if (ok)
      UP_WARN("io_uring: kernel lacks optional opcodes: %s (uringproxy works without them)",
              out.missing.c_str());
    else
      UP_ERROR("io_uring: kernel lacks required opcodes: %s (need Linux 5.19 or newer)",
               out.missing.c_str());
  }
  return ok;
}

namespace {
int init_ring(io_uring& ring, unsigned entries, RingFeatures& features) {
  io_uring_params p;
  memset(&p, 0, sizeof p);
  // DEFER_TASKRUN runs completions only when we enter the ring to wait: no IPIs into a busy
  // worker, fewer context switches on a small machine.
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 4;
  int r = io_uring_queue_init_params(entries, &ring, &p);
  if (r == 0) {
    features.defer_taskrun = true;
    return 0;
  }
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 4;
  r = io_uring_queue_init_params(entries, &ring, &p);
  if (r == 0) return 0;
  memset(&p, 0, sizeof p);
  return io_uring_queue_init_params(entries, &ring, &p);
}
}  // namespace

int setup_ring(io_uring& ring, unsigned entries, RingFeatures& features) {
  int r = init_ring(ring, entries, features);
  if (r < 0) return r;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    features.recv_poll_first = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
    io_uring_free_probe(probe);
  }
  return 0;
}

void reap(io_uring& ring, std::vector<Completion>& out) {
  unsigned head, seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring, head, cqe) {
    out.push_back({cqe->user_data, cqe->res, cqe->flags});
    ++seen;
  }
  io_uring_cq_advance(&ring, seen);
}

int submit_queued(io_uring& ring, std::vector<Completion>& spill) {
  constexpr unsigned quick_tries = 4;
  constexpr unsigned max_tries = quick_tries + 1000;  // then 1 ms apart: about a second
  int err = 0;
  for (unsigned tries = 0; io_uring_sq_ready(&ring) > 0; ++tries) {
    if (tries == max_tries) return err;
    int r = io_uring_submit(&ring);
    if (r > 0) continue;
    err = r < 0 ? r : -EAGAIN;
    // Taking the completions lets the kernel post the ones it holds back and free requests.
    reap(ring, spill);
    if (tries >= quick_tries) {
      timespec ms{0, 1000 * 1000};
      nanosleep(&ms, nullptr);
    }
  }
  return 0;
}

io_uring_sqe* get_sqe(io_uring& ring, std::vector<Completion>& spill, int& err) {
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring)) return sqe;
  err = submit_queued(ring, spill);
  return err ? nullptr : io_uring_get_sqe(&ring);
}

}  // namespace up
