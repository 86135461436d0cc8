// Reading one weight element as fp32 whatever its storage type (shared by the kernels).
#pragma once

#include <cuda_bf16.h>

#include "kernels/launchers.h"

namespace xlserve::kernels {

__device__ __forceinline__ float LoadWeight(const void* w, WeightType type, int64_t i) {
  return type == WeightType::kF32 ? static_cast<const float*>(w)[i]
                                  : __bfloat162float(static_cast<const __nv_bfloat16*>(w)[i]);
}

// Sum over a warp, result in every lane.
__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0;
  for (int i = 0; i < (blockDim.x + 31) / 32; ++i) total += scratch[i];
  return total;
}

}  // namespace xlserve::kernels
