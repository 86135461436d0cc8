// OpenCandidates: the open gap and its limit, and the StreamGemm kept open past them.
#include "kernels/open_candidates.h"

#include <catch2/catch.hpp>
#include <vector>

namespace xlserve::kernels {
namespace {

std::vector<size_t> Open(const std::vector<float>& ms, const std::vector<bool>& stream) {
  return OpenCandidates(ms, stream, 0.05f, 0.15f, 3);
}

TEST_CASE("the candidates within the open gap stay open, at most the limit") {
  CHECK(Open({1.0f, 1.04f, 1.06f}, {false, false, false}) == std::vector<size_t>{0, 1});
  CHECK(Open({1.0f, 1.01f, 1.02f, 1.03f}, {true, false, false, false}) == std::vector<size_t>{0, 1, 2});
  CHECK(Open({1.0f}, {false}) == std::vector<size_t>{0});
  CHECK(Open({}, {}).empty());
}

TEST_CASE("the fastest stream GEMM within the wider gap stays open where no open candidate is one") {
  // Outside the open gap: kept, one past the limit where the limit is reached.
  CHECK(Open({1.0f, 1.07f, 1.08f}, {false, false, true}) == std::vector<size_t>{0, 2});
  CHECK(Open({1.0f, 1.01f, 1.02f, 1.10f, 1.12f}, {false, false, false, true, true}) ==
        std::vector<size_t>{0, 1, 2, 3});
  // Not where one is open already, nor past the wider gap.
  CHECK(Open({1.0f, 1.02f, 1.10f}, {false, true, true}) == std::vector<size_t>{0, 1});
  CHECK(Open({1.0f, 1.20f}, {false, true}) == std::vector<size_t>{0});
  CHECK(Open({1.0f, 1.10f}, {true, true}) == std::vector<size_t>{0});
}

}  // namespace
}  // namespace xlserve::kernels
