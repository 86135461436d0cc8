#include "engine/util/thread_pool.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <vector>

namespace xlserve {
namespace {

TEST_CASE("ParallelFor visits every index exactly once") {
  ThreadPool pool(4);
  for (int64_t n : {1, 7, 64, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, 3, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
  }
}

TEST_CASE("ParallelFor can be called many times in a row") {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 200; ++round) {
    pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
  }
  CHECK(sum.load() == 200 * 4950);
}

TEST_CASE("A one-thread pool runs inline") {
  ThreadPool pool(1);
  CHECK(pool.num_threads() == 1);
  int64_t total = 0;
  pool.ParallelFor(10, 1, [&](int64_t b, int64_t e) { total += e - b; });
  CHECK(total == 10);
}

}  // namespace
}  // namespace xlserve
