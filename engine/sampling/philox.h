// Counter-based random numbers for sampling: Philox-4x32-10 and the uniform doubles made from it.
//
// Why counter-based: draw number n of a seed is a pure function of (seed, n), so the CPU
// reference, a CUDA kernel (one thread per request, no carried generator state) and a resumed
// request all produce the same numbers, on any compiler or platform. Everything is 32-bit integer
// arithmetic; no library generator is involved.
//
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
//   counter c = (c0, c1, c2, c3), key k = (k0, k1), all uint32. Ten rounds; each round does
//     (hi0, lo0) = 0xD2511F53 * c0   (64-bit product split into high and low 32 bits)
//     (hi1, lo1) = 0xCD9E8D57 * c2
//     c = (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)
//   and between rounds the key is bumped: k0 += 0x9E3779B9, k1 += 0xBB67AE85 (mod 2^32).
//   The output is c after the tenth round.
//
// Uniform draw n (0-based) of a 64-bit seed:
//   (w0, w1, w2, w3) = Philox4x32_10(c = (lo32(n), hi32(n), 0, 0), k = (lo32(seed), hi32(seed)))
//   U(seed, n) = (((uint64(w0) << 32) | w1) >> 11) * 2^-53        -- a double in [0, 1)
// w2 and w3 are unused (kept free so that one block is one draw and draws are independent).
// The arithmetic lives in philox_core.h, which the CUDA sampler compiles too.
#pragma once

#include <array>
#include <cstdint>

namespace xlserve {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// One Philox-4x32-10 block.
PhiloxCounter Philox4x32_10(PhiloxCounter counter, PhiloxKey key);

// U(seed, index) as defined above.
double PhiloxUniform(uint64_t seed, uint64_t index);

// A sequence of U(seed, 0), U(seed, 1), ...; copyable, 16 bytes, no hidden state beyond the index.
class UniformStream {
 public:
  explicit UniformStream(uint64_t seed) : seed_(seed) {}

  double Next() { return PhiloxUniform(seed_, index_++); }
  // Moves past `count` draws that were taken elsewhere (e.g. on the GPU from the same index).
  void Skip(uint64_t count) { index_ += count; }

  uint64_t seed() const { return seed_; }
  // How many draws have been taken so far (the index of the next draw).
  uint64_t index() const { return index_; }

 private:
  uint64_t seed_;
  uint64_t index_ = 0;
};

}  // namespace xlserve
