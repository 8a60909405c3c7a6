#pragma once
// A ring of provided buffers (IORING_REGISTER_PBUF_RING, Linux 5.19): receives on the relay's
// small-message path take a buffer only when bytes arrive, so an idle tunnel holds none and
// the pool, not the tunnel count, bounds the memory. A recv that finds the ring empty fails
// with ENOBUFS and its direction moves to splice, which needs no buffer, until the ring has
// room again.
#include <liburing.h>

#include <cstddef>
#include <cstdint>

namespace up {

class BufferRing {
 public:
  static constexpr uint16_t group = 0;  // the relay's buffer group id, used in its SQEs
  static constexpr uint16_t udp_group = 1;  // UDP relay datagrams (udp/udp_association.cpp)

  // Registers `count` (a power of two) buffers of `size` bytes with `ring` as group `bgid`;
  // on failure (an older kernel) ok() is false and error() says why.
  BufferRing(io_uring& ring, unsigned count, uint32_t size, uint16_t bgid = group);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  bool ok() const { return br_ != nullptr; }
  int error() const { return error_; }
  uint32_t buffer_size() const { return size_; }
  char* data(uint16_t id) const { return base_ + size_t{id} * size_; }
  // A completion carried buffer `id` out of the ring; every one is matched by a put().
  void taken() { ++held_; }
  // Hands buffer `id` back to the kernel for the next receive.
  void put(uint16_t id);
  // Whether a receive could get a buffer now, as far as the completions handled so far tell
  // (one the kernel took for a completion not yet handled still counts as free).
  bool has_free() const { return held_ < count_; }

 private:
  io_uring& ring_;
  uint16_t bgid_;
  io_uring_buf_ring* br_ = nullptr;
  char* base_ = nullptr;  // count * size bytes of buffers
  size_t map_bytes_ = 0;  // the ring entries and the buffers, one mapping
  unsigned count_;
  unsigned held_ = 0;  // buffers out of the ring (taken, not yet put back)
  uint32_t size_;
  int error_ = 0;
};

}  // namespace up
