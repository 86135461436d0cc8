#include "engine/sampling/philox.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <set>

namespace xlserve {
namespace {

// Known-answer vectors published with the Random123 library for philox4x32, 10 rounds.
TEST_CASE("Philox4x32-10 matches the published known-answer vectors") {
  CHECK(Philox4x32_10({0, 0, 0, 0}, {0, 0}) ==
        PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(Philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(Philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("PhiloxUniform takes the top 53 bits of words 0 and 1") {
  // Seed 0, draw 0 is the all-zero block above: words 0x6627e8d5, 0xe169c58d.
  CHECK(PhiloxUniform(0, 0) == std::ldexp(static_cast<double>(0x6627e8d5e169c58dull >> 11), -53));

  // Seed and index are split into low/high 32-bit halves of the key and counter.
  const uint64_t seed = 0x299f31d0a4093822ull;
  const uint64_t index = 0x85a308d3243f6a88ull;
  const PhiloxCounter w =
      Philox4x32_10({0x243f6a88, 0x85a308d3, 0, 0}, {0xa4093822, 0x299f31d0});
  const uint64_t bits = (static_cast<uint64_t>(w[0]) << 32) | w[1];
  CHECK(PhiloxUniform(seed, index) == std::ldexp(static_cast<double>(bits >> 11), -53));
}

TEST_CASE("UniformStream yields U(seed, 0), U(seed, 1), ... and counts its draws") {
  UniformStream stream(1234);
  for (uint64_t n = 0; n < 100; ++n) {
    CHECK(stream.index() == n);
    CHECK(stream.Next() == PhiloxUniform(1234, n));
  }
  UniformStream copy = stream;
  CHECK(copy.Next() == stream.Next());
}

TEST_CASE("uniform draws lie in [0, 1) with mean 1/2 and variance 1/12") {
  constexpr int kDraws = 100000;
  double sum = 0.0, sum_sq = 0.0;
  std::set<double> distinct;
  for (int n = 0; n < kDraws; ++n) {
    const double u = PhiloxUniform(7, n);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
    sum_sq += u * u;
    distinct.insert(u);
  }
  // 5 sigma bounds: sd of the mean of N uniforms is sqrt(1/12 / N); of the mean of u^2 it is
  // sqrt((1/5 - 1/9) / N).
  const double mean = sum / kDraws;
  CHECK(std::abs(mean - 0.5) < 5.0 * std::sqrt(1.0 / 12.0 / kDraws));
  CHECK(std::abs(sum_sq / kDraws - 1.0 / 3.0) < 5.0 * std::sqrt((0.2 - 1.0 / 9.0) / kDraws));
  // With 53-bit values a repeat among 1e5 draws has probability ~5e-7.
  CHECK(distinct.size() == kDraws);
}

TEST_CASE("different seeds give different streams") {
  int equal = 0;
  for (uint64_t n = 0; n < 1000; ++n) equal += PhiloxUniform(1, n) == PhiloxUniform(2, n);
  CHECK(equal == 0);
  // The high half of the seed matters too.
  CHECK(PhiloxUniform(1, 0) != PhiloxUniform(1 + (1ull << 32), 0));
}

}  // namespace
}  // namespace xlserve
