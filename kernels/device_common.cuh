// Device helpers shared by the kernels: typed loads, split-pair stores and block reductions.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include <type_traits>

#include "kernels/launchers.h"

namespace xlserve::kernels {

__device__ __forceinline__ float LoadAs(const void* p, WeightType type, int64_t i) {
  return type == WeightType::kF32 ? static_cast<const float*>(p)[i]
                                  : __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}

__device__ __forceinline__ float Add(float a, float b) { return a + b; }
__device__ __forceinline__ float4 Add(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// Σ_p t[p * count + i] over the planes of a GEMM's output (GemmPlanes), in plane order:
// ((t0 + t1) + t2) + ...; readers add the bias and anything accumulated into after.
template <typename V>
__device__ __forceinline__ V SumPlanes(const V* t, int planes, int64_t count, int64_t i) {
  V v = t[i];
  for (int p = 1; p < planes; ++p) v = Add(v, t[p * count + i]);
  return v;
}

// Whether p may be read or written as float4s (null counts as aligned: nothing is accessed).
__host__ __device__ inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Element i of the bf16 form of an activation of `count` values: hi at i, and with a pair lo at
// count + i.
__device__ __forceinline__ void StoreBf16(const Bf16Activation& a, int64_t count, int64_t i, float v) {
  __nv_bfloat16* s = static_cast<__nv_bfloat16*>(a.data);
  const __nv_bfloat16 hi = __float2bfloat16_rn(v);
  s[i] = hi;
  if (a.pair) s[count + i] = __float2bfloat16_rn(v - __bfloat162float(hi));
}

// Element i of an activation of `count` values: out[i] = v when `out` is non-null (null when
// only a product over its bf16 form reads it next), and its bf16 form when that has data.
__device__ __forceinline__ void StoreActivation(float* out, const Bf16Activation& bf16, int64_t count, int64_t i,
                                                float v) {
  if (out) out[i] = v;
  if (bf16.data) StoreBf16(bf16, count, i, v);
}

// Elements i..i+3 of the same (i and count multiples of 4, out and bf16.data 16-byte aligned):
// one 16-byte and one or two 8-byte stores instead of up to twelve scalar ones.
__device__ __forceinline__ void StoreActivation4(float* out, const Bf16Activation& bf16, int64_t count, int64_t i,
                                                 float4 v) {
  if (out) *reinterpret_cast<float4*>(out + i) = v;
  if (!bf16.data) return;
  const float f[4] = {v.x, v.y, v.z, v.w};
  __nv_bfloat162 hi[2], lo[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    hi[e] = __floats2bfloat162_rn(f[2 * e], f[2 * e + 1]);
    const float2 back = __bfloat1622float2(hi[e]);
    lo[e] = __floats2bfloat162_rn(f[2 * e] - back.x, f[2 * e + 1] - back.y);
  }
  __nv_bfloat16* s = static_cast<__nv_bfloat16*>(bf16.data);
  *reinterpret_cast<uint2*>(s + i) = *reinterpret_cast<const uint2*>(hi);
  if (bf16.pair) *reinterpret_cast<uint2*>(s + count + i) = *reinterpret_cast<const uint2*>(lo);
}

// Calls launch(std::integral_constant<int, rows>) for 1 <= rows <= kGemvMaxRows (the small-row
// GEMVs' templates); nothing for 0 rows, cudaErrorInvalidValue above.
template <typename Launch>
cudaError_t LaunchByRowCount(int rows, Launch&& launch) {
  switch (rows) {
    case 0: return cudaSuccess;
    case 1: return launch(std::integral_constant<int, 1>{});
    case 2: return launch(std::integral_constant<int, 2>{});
    case 3: return launch(std::integral_constant<int, 3>{});
    case 4: return launch(std::integral_constant<int, 4>{});
    case 5: return launch(std::integral_constant<int, 5>{});
    case 6: return launch(std::integral_constant<int, 6>{});
    case 7: return launch(std::integral_constant<int, 7>{});
    case 8: return launch(std::integral_constant<int, 8>{});
    default: return cudaErrorInvalidValue;
  }
}
static_assert(kGemvMaxRows == 8, "LaunchByRowCount covers 1..kGemvMaxRows");

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

// The thread-block cluster barrier (sm_90), split: ClusterArrive releases this thread's earlier
// memory operations to the cluster, ClusterWait returns once every non-exited thread of the
// cluster has arrived and acquires theirs. A thread arrives before it waits; a block may arrive
// and exit without waiting. Every thread of a warp makes each call together (.aligned).
__device__ __forceinline__ void ClusterArrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void ClusterWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}

__device__ __forceinline__ float LogSigmoid(float x) { return fminf(x, 0.0f) - log1pf(expf(-fabsf(x))); }

// The gate arithmetic of one token (DESIGN §3): from pre-activations ĩ, f̃ (soft-capped when
// cap > 0) and the old stabiliser m, the new m and the factors f (old state) and i (new).
struct GateFactors {
  float m, f, i;
};
// The log-space gates of one token: ĩ (soft-capped) and log f = logsigmoid(f̃ soft-capped).
struct LogGates {
  float ig, lf;
};
__device__ __forceinline__ LogGates MlstmLogGates(float ig, float fg, float cap) {
  if (cap > 0) {
    ig = cap * tanhf(ig / cap);
    fg = cap * tanhf(fg / cap);
  }
  return {ig, LogSigmoid(fg)};
}
__device__ __forceinline__ GateFactors MlstmGates(float ig, float fg, float m_old, float cap) {
  const LogGates g = MlstmLogGates(ig, fg, cap);
  const float m = fmaxf(g.lf + m_old, g.ig);
  return {m, expf(g.lf + m_old - m), expf(g.ig - m)};
}

}  // namespace xlserve::kernels
