#include "engine/util/dtype.h"

#include <catch2/catch.hpp>
#include <cmath>

namespace xlserve {
namespace {

TEST_CASE("bf16 round trip is exact for values bf16 can hold") {
  for (float v : {0.0f, 1.0f, -2.5f, 0.15625f, 3.0e38f, -1.0e-30f}) {
    const float r = BF16ToFloat(FloatToBF16(v));
    CHECK(BF16ToFloat(FloatToBF16(r)) == r);
  }
  CHECK(BF16ToFloat(FloatToBF16(1.0f)) == 1.0f);
}

TEST_CASE("bf16 rounds to nearest even") {
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to even (1).
  CHECK(BF16ToFloat(FloatToBF16(1.0f + std::ldexp(1.0f, -8))) == 1.0f);
  // 1 + 3*2^-8 lies between 1 + 2^-7 and 1 + 2^-6: ties go to even (1 + 2^-6).
  CHECK(BF16ToFloat(FloatToBF16(1.0f + 3 * std::ldexp(1.0f, -8))) == 1.0f + std::ldexp(1.0f, -6));
  CHECK(std::isnan(BF16ToFloat(FloatToBF16(std::nanf("")))));
}

TEST_CASE("f16 decodes normals, subnormals, infinities") {
  CHECK(F16ToFloat(0x3c00) == 1.0f);
  CHECK(F16ToFloat(0xc000) == -2.0f);
  CHECK(F16ToFloat(0x0001) == std::ldexp(1.0f, -24));
  CHECK(F16ToFloat(0x7bff) == 65504.0f);
  CHECK(std::isinf(F16ToFloat(0x7c00)));
}

}  // namespace
}  // namespace xlserve
