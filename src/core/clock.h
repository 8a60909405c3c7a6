#pragma once
#include <time.h>

#include <cstdint>

namespace up {

// Coarse monotonic milliseconds: timeouts need ~ms precision, not a vDSO fine clock per event.
inline uint64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Fine monotonic microseconds, for durations worth a histogram (connect times).
inline uint64_t monotonic_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace up
