#pragma once
// An invariant check for fuzz targets: says which one failed, then aborts so libFuzzer saves
// the input.
#include <cstdio>
#include <cstdlib>

#define FUZZ_ASSERT(cond)                                                        \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                       \
      std::abort();                                                              \
    }                                                                            \
  } while (0)
