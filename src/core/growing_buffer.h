#pragma once
// A receive buffer for a user-space relay: one TLS record (16 KiB) to start with, 64 KiB once a
// receive fills it, so a bulk flow moves four records per ring operation while a quiet tunnel
// stays small. Used by the copy relay's plaintext buffers and a TLS side's ciphertext buffer.
#include <cstdint>
#include <memory>

namespace up {

struct GrowingBuffer {
  static constexpr uint32_t small_cap = 16 * 1024;
  static constexpr uint32_t bulk_cap = 64 * 1024;

  // A receive of n bytes landed in it: a full one marks it to grow before the next.
  void filled(uint32_t n) {
    if (n == cap_ && cap_ < bulk_cap) grow_ = true;
  }
  // Where the next receive goes, grown if marked. Call only when none of its bytes are in use.
  char* next_receive() {
    if (grow_) {
      grow_ = false;
      data_.reset(new char[bulk_cap]);
      cap_ = bulk_cap;
    }
    return data_.get();
  }
  char* data() const { return data_.get(); }
  uint32_t cap() const { return cap_; }

 private:
  std::unique_ptr<char[]> data_{new char[small_cap]};
  uint32_t cap_ = small_cap;
  bool grow_ = false;
};

}  // namespace up
