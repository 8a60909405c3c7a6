#include "core/buffer_ring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

namespace up {

BufferRing::BufferRing(io_uring& ring, unsigned count, uint32_t size, uint16_t bgid)
    : ring_(ring), bgid_(bgid), count_(count), size_(size) {
  // The kernel wants the entries page-aligned; the buffers follow them in the same mapping.
  // Pages are touched (and so resident) only as buffers are first used.
  size_t ring_bytes = count * sizeof(io_uring_buf);
  ring_bytes = (ring_bytes + 4095) & ~size_t{4095};
  map_bytes_ = ring_bytes + size_t{count} * size;
  void* mem = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    error_ = errno;
    return;
  }
  auto* br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = count;
  reg.bgid = bgid_;
  if (int r = io_uring_register_buf_ring(&ring_, &reg, 0); r < 0) {
    error_ = -r;
    munmap(mem, map_bytes_);
    return;
  }
  io_uring_buf_ring_init(br);
  base_ = static_cast<char*>(mem) + ring_bytes;
  int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i)
    io_uring_buf_ring_add(br, data(static_cast<uint16_t>(i)), size, static_cast<uint16_t>(i), mask,
                          static_cast<int>(i));
  io_uring_buf_ring_advance(br, static_cast<int>(count));
  br_ = br;
}

BufferRing::~BufferRing() {
  if (!br_) return;
  io_uring_unregister_buf_ring(&ring_, bgid_);
  munmap(br_, map_bytes_);
}

void BufferRing::put(uint16_t id) {
  --held_;
  io_uring_buf_ring_add(br_, data(id), size_, id, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

}  // namespace up
