// The arithmetic of philox.h as inline functions that both the host compiler and nvcc compile:
// the CPU sampler (philox.cc) and the CUDA sampler (kernels/sample_rows.cu) draw the same
// numbers from one definition. philox.h specifies the maths; this header only shares it.
#pragma once

#include <cstdint>

#include "base/host_device.h"

namespace xlserve::philox {

struct Block {
  uint32_t w[4];
};

// Philox-4x32-10 of counter `c` under key (k0, k1).
XLSERVE_HOST_DEVICE inline Block Philox4x32_10(Block c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u;
  constexpr uint32_t kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kBump0 = 0x9E3779B9u;  // golden ratio
  constexpr uint32_t kBump1 = 0xBB67AE85u;  // sqrt(3) - 1
  constexpr int kRounds = 10;
  for (int r = 0; r < kRounds; ++r) {
    if (r > 0) {
      k0 += kBump0;
      k1 += kBump1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c.w[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c.w[2];
    c = Block{{static_cast<uint32_t>(p1 >> 32) ^ c.w[1] ^ k0, static_cast<uint32_t>(p1),
               static_cast<uint32_t>(p0 >> 32) ^ c.w[3] ^ k1, static_cast<uint32_t>(p0)}};
  }
  return c;
}

// U(seed, index): the top 53 bits of words 0 and 1 as a double in [0, 1).
XLSERVE_HOST_DEVICE inline double Uniform(uint64_t seed, uint64_t index) {
  const Block out = Philox4x32_10(Block{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u}},
                                  static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = (static_cast<uint64_t>(out.w[0]) << 32) | out.w[1];
  constexpr double kTwoToMinus53 = 1.0 / 9007199254740992.0;
  return static_cast<double>(bits >> 11) * kTwoToMinus53;
}

}  // namespace xlserve::philox
