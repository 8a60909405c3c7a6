#pragma once
// The relay of a plain tunnel (both sides TCP without TLS). Each direction starts on the
// small-message path (src -> provided buffer -> dst with recv/send on the ring,
// relay/buffer_relay.cpp) and moves for good to splice (src -> pipe -> dst,
// relay/splice_relay.cpp) once a read fills a buffer: bulk bytes then never leave the kernel.
// A direction that found the buffer pool empty splices too, until it is idle and the pool has
// room again.
#include <cstdint>
#include <memory>
#include <string>

#include "core/pipe_pool.h"
#include "relay/relay.h"

namespace up {

struct Direction {
  bool spliced = false;
  // On splice only because the buffer pool ran dry (ENOBUFS), not because of bulk: back to
  // the small-message path once idle with the pool having room again.
  bool on_loan = false;
  // small-message path
  bool bulk = false;      // the buffer in flight was full: splice once it is sent
  int32_t buf = -1;       // the provided buffer held (read, not yet all sent), or -1
  uint32_t buf_len = 0;   // bytes read into it
  uint32_t buf_sent = 0;  // bytes of it sent so far
  uint32_t buf_asked = 0;  // bytes the recv asked for (less than a buffer under a bandwidth cap)
  bool drained = false;    // the last recv emptied src's socket (recv_emptied, core/ring.h)
  // splice path
  Pipe* pipe = nullptr;
  uint32_t in_pipe = 0;  // bytes sitting in the pipe
  // dst's peer half-closed: writability is awaited by sending the pipe's first bytes
  std::unique_ptr<char[]> nudge;
  uint32_t nudge_len = 0;   // bytes taken out of the pipe into `nudge`
  uint32_t nudge_sent = 0;  // of them, sent (a send of them is in flight while < nudge_len)
  bool eof = false;      // src said EOF
  bool done = false;     // EOF forwarded (dst shut down for writing)
  bool wants_pipe = false;
  bool throttled = false;  // waiting for the bandwidth cap
};

class SpliceRelay final : public Relay {
 public:
  SpliceRelay(Connection& c, std::string to_target, std::string to_client);

  void start() override;
  void on_recv(Side, int) override {}  // the splice relay's receives are its own operations
  void on_sent(Side s) override;
  void on_op(Op op, int res, uint32_t flags) override;
  void retry() override;
  void release() override;
  void reclaim(Op op) override;

 private:
  // The next read of a direction, on whichever path it is on.
  void relay_in(Direction& d, bool up);
  // splice path (relay/splice_relay.cpp)
  void pump(Direction& d, bool up);
  void on_dst_writable(Direction& d, bool up, int res);  // a POLLOUT wait (or nudge) is done
  void nudge_send(Direction& d, bool up);
  // small-message path (relay/buffer_relay.cpp)
  void buffer_recv(Direction& d, bool up);
  void buffer_send(Direction& d, bool up);
  void buffer_on_recv(Direction& d, bool up, int res, uint32_t flags);
  void buffer_on_sent(Direction& d, bool up, int res);
  void buffer_release(Direction& d);
  void poll(Op op, int fd, unsigned events);
  int src_fd(bool up) const;
  int dst_fd(bool up) const;
  void pass_eof(Direction& d, bool up);  // src said EOF: tell dst, end the direction
  void direction_done(Direction& d);

  Connection& c_;
  Direction up_;
  Direction down_;
  std::string to_target_;  // first bytes, sent before the direction starts
  std::string to_client_;
};

}  // namespace up
