#include "engine/model/testing/safetensors_writer.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "engine/model/safetensors.h"

namespace xlserve::testing {
namespace {

TEST_CASE("FloatToF16 rounds to nearest even and saturates to infinity", "[writer]") {
  CHECK(FloatToF16(1.0f) == 0x3c00);
  CHECK(FloatToF16(-2.0f) == 0xc000);
  CHECK(FloatToF16(0.1f) == 0x2e66);
  CHECK(FloatToF16(65504.0f) == 0x7bff);
  CHECK(FloatToF16(65519.0f) == 0x7bff);
  CHECK(FloatToF16(65520.0f) == 0x7c00);  // the tie between 65504 and 2^16 goes to even: inf
  CHECK(FloatToF16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(FloatToF16(std::ldexp(1.0f, -25)) == 0x0000);   // tie with 0 goes to even
  CHECK(FloatToF16(std::ldexp(3.0f, -25)) == 0x0002);   // tie between 1 and 2 goes to 2
  CHECK(FloatToF16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);      // tie: even mantissa stays
  CHECK(FloatToF16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);      // tie: odd mantissa rounds up
  CHECK(FloatToF16(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK((FloatToF16(std::nanf("")) & 0x7c00) == 0x7c00);
  CHECK((FloatToF16(std::nanf("")) & 0x03ff) != 0);
}

TEST_CASE("FloatToF16 inverts F16ToFloat for every non-NaN half", "[writer]") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (nan) continue;
    INFO("half 0x" << std::hex << h);
    REQUIRE(FloatToF16(F16ToFloat(static_cast<uint16_t>(h))) == h);
  }
}

TEST_CASE("WriteSafetensors aligns every tensor and refuses inconsistent input", "[writer]") {
  const std::string dir = MakeTempDir("writer");
  REQUIRE(!dir.empty());
  const std::string path = dir + "/a.safetensors";
  // An odd-sized 16-bit tensor first would misalign the f32 one after it, if the writer kept order.
  REQUIRE(WriteSafetensors(path, {{"odd", DType::kBF16, {3}, {1, 2, 3}},
                                  {"wide", DType::kF32, {2}, {4, 5}},
                                  {"half", DType::kF16, {1}, {6}}})
              .ok());
  auto file = SafetensorsFile::Open(path);
  REQUIRE(file.ok());
  for (const std::string& name : (*file)->names()) {
    TensorView view = *(*file)->Find(name);
    INFO(name);
    CHECK(reinterpret_cast<uintptr_t>(view.data) % DTypeSize(view.dtype) == 0);
  }
  CHECK(ToFloats(*(*file)->Find("wide")) == std::vector<float>{4, 5});

  auto mismatch = WriteSafetensors(path, {{"t", DType::kF32, {2, 2}, {1, 2, 3}}});
  CHECK(std::string(mismatch.message()) == "tensor t has 3 values for 4 elements");
  auto duplicate = WriteSafetensors(path, {{"t", DType::kF32, {1}, {1}}, {"t", DType::kF32, {1}, {2}}});
  CHECK(std::string(duplicate.message()) == "duplicate tensor t");
}

TEST_CASE("RoundTripThrough matches what a stored tensor reads back as", "[writer]") {
  CHECK(RoundTripThrough(DType::kF32, 0.1f) == 0.1f);
  CHECK(RoundTripThrough(DType::kBF16, 0.1f) == BF16ToFloat(FloatToBF16(0.1f)));
  CHECK(RoundTripThrough(DType::kF16, 0.1f) == F16ToFloat(0x2e66));
  CHECK(RoundTripThrough(DType::kBF16, 0.1f) != 0.1f);
}

}  // namespace
}  // namespace xlserve::testing
