#include "core/pipe_pool.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

TEST_CASE("the pipe pool is bounded, reuses released pipes and keeps only a few idle") {
  up::PipePool pool(3, 1, 1 << 20);
  up::Pipe* a = pool.acquire();
  up::Pipe* b = pool.acquire();
  up::Pipe* c = pool.acquire();
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  CHECK(pool.acquire() == nullptr);  // bounded: the caller waits
  CHECK(pool.in_use() == 3);
  CHECK(a->size >= 4096);
  CHECK((fcntl(a->rd, F_GETFL) & O_NONBLOCK) != 0);
  pool.release(a);
  up::Pipe* again = pool.acquire();
  CHECK(again == a);  // reused
  pool.release(again);
  int fd_b = b->rd;
  pool.release(b);  // only one idle pipe is kept: this one is closed
  CHECK(fcntl(fd_b, F_GETFD) == -1);
  pool.discard(c);
  CHECK(pool.in_use() == 0);
}
