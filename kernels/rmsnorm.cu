// RMSNorm and the per-head LayerNorm with the output gate.
//
// RmsNorm:      out[r, c] = x[r, c] / sqrt(mean_c x[r, :]^2 + eps) * w[c] (+ b[c]); ResidualRmsNorm
//               first folds a GEMM's output planes into x (x += Σ_p t[p] (+ bias))
//               and writes x back, in place of a separate CombineSplit pass.
//               grid (rows); the sum of squares in fp32 over a block reduction. For d % 4 == 0
//               (d <= 16384) a block of up to 1024 threads holds its row in registers as
//               float4s, read once: a decode step runs 2 x layers of these on one row each, where
//               a 256-thread block re-reading its row took ~13 us per call on an H200. Otherwise
//               block 256 over c, two passes.
// HeadNormGate: for each row r and head h, over its head_dim values g:
//               g <- (g - mean g) / sqrt(var g + eps)   (biased variance, fp32)
//               g <- g * w[h*hd + c] (+ b[...]);  g <- g * sigmoid(o[r, h*hd + c])
//               grid (rows, heads). For head_dim % 4 == 0 (<= 16384) a block of head_dim / 4
//               threads (at most 1024) holds the head's values and its o in registers as
//               float4s, loaded together, so both reductions wait on one round of loads;
//               otherwise block 128 over c, three passes. Matches transformers' xLSTM
//               multihead_norm followed by sigmoid(ogate) * h. With src_rows, output row r
//               reads h and o at row src_rows[r] (the rows a block's tail keeps).
// Both vector forms load their weights (w, b) before waiting for the kernel ahead
// (dependent_launch.cuh): at batch 1 the block's reduction is the pass's critical path.
// x, h: fp32 [rows, width] row-major; w, b fp32. Both write the bf16 form of their output (the
// split pair or bf16 alone, launchers.h) when a product with bf16 weights reads it next, and the
// fp32 out unless it is null (when only that product reads it); the vector forms store 16 +
// 2 x 8 (pair) or 8 bytes per four values.
#include <algorithm>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/device_common.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

// A vector kernel's weights for its kPer float4s: early (before the wait) while they fit in
// registers beside the row at 1024 threads; kPer = 4 loads each where it is used, as spilling
// would cost more than the wait.
template <int kPer>
constexpr bool kEarlyWeights = kPer <= 2;

__device__ __forceinline__ void LoadWeight(const float4* w, const float4* b, int64_t at, float4* wv, float4* bv) {
  *wv = w[at];
  *bv = b ? b[at] : make_float4(0, 0, 0, 0);
}

// Weights [base, base + n4) of this thread's kPer float4s; zeros past n4.
template <int kPer>
__device__ __forceinline__ void LoadWeights(const float4* w, const float4* b, int64_t base, int n4, float4 (&wv)[kPer],
                                            float4 (&bv)[kPer]) {
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * blockDim.x;
    wv[p] = bv[p] = make_float4(0, 0, 0, 0);
    if (i < n4) LoadWeight(w, b, base + i, &wv[p], &bv[p]);
  }
}

// kResidual: x[r] += the GEMM's planes t (+ t_bias) first, written back (ResidualRmsNorm).
template <bool kResidual>
__global__ void RmsNormKernel(float* x, const float* t, int planes, const float* t_bias, const float* w,
                              const float* b, int d, int64_t count, float eps, float* out, Bf16Activation bf16) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  __shared__ float scratch[32];
  float* xr = x + int64_t(blockIdx.x) * d;
  if (kResidual) {
    const int64_t at = int64_t(blockIdx.x) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
      xr[c] = SumPlanes(t, planes, count, at + c) + (t_bias ? t_bias[c] : 0.0f) + xr[c];
    }
    __syncthreads();
  }
  float sq = 0;
  for (int c = threadIdx.x; c < d; c += blockDim.x) sq += xr[c] * xr[c];
  const float scale = rsqrtf(BlockSum(sq, scratch) / d + eps);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float v = xr[c] * scale * w[c];
    if (b) v += b[c];
    StoreActivation(out, bf16, count, int64_t(blockIdx.x) * d + c, v);
  }
}

template <int kPer, bool kResidual>
__global__ void __launch_bounds__(1024, 1)
    RmsNormVec4Kernel(float4* x, const float4* t, int planes, const float4* t_bias, const float4* w, const float4* b,
                      int d4, int64_t count, float eps, float* out, Bf16Activation bf16) {
  AllowDependentLaunch();
  // No kernel writes the norm's weights: where registers allow, their loads leave before the wait
  // (dependent_launch.cuh) instead of after the reduction, on the critical path.
  float4 wv[kPer], bv[kPer];
  if constexpr (kEarlyWeights<kPer>) LoadWeights<kPer>(w, b, 0, d4, wv, bv);
  WaitForPriorKernels();
  __shared__ float scratch[32];
  float4* xr = x + int64_t(blockIdx.x) * d4;
  float4 v[kPer];
  float sq = 0;
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * blockDim.x;
    v[p] = i < d4 ? xr[i] : make_float4(0, 0, 0, 0);
    if (kResidual && i < d4) {
      const int64_t at = int64_t(blockIdx.x) * d4 + i;
      const float4 sum = SumPlanes(t, planes, count / 4, at);
      const float4 tb = t_bias ? t_bias[i] : make_float4(0, 0, 0, 0);
      v[p] = Add(Add(sum, tb), v[p]);
      xr[i] = v[p];
    }
    sq += v[p].x * v[p].x + v[p].y * v[p].y + v[p].z * v[p].z + v[p].w * v[p].w;
  }
  const float scale = rsqrtf(BlockSum(sq, scratch) / (4 * d4) + eps);
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * blockDim.x;
    if (i >= d4) continue;
    if constexpr (!kEarlyWeights<kPer>) LoadWeight(w, b, i, &wv[p], &bv[p]);
    const float4 o = make_float4(v[p].x * scale * wv[p].x + bv[p].x, v[p].y * scale * wv[p].y + bv[p].y,
                                 v[p].z * scale * wv[p].z + bv[p].z, v[p].w * scale * wv[p].w + bv[p].w);
    StoreActivation4(out, bf16, count, (int64_t(blockIdx.x) * d4 + i) * 4, o);
  }
}

// g * sigmoid(o).
__device__ __forceinline__ float Gated(float g, float o) { return g / (1.0f + expf(-o)); }

__global__ void HeadNormGateKernel(const float* h, const float* o, int64_t o_stride, const int32_t* src_rows,
                                   const float* w, const float* b, int heads, int head_dim, int64_t count, float eps,
                                   float* out, Bf16Activation bf16) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  __shared__ float scratch[32];
  const int width = heads * head_dim;
  const int64_t src = src_rows ? src_rows[blockIdx.x] : blockIdx.x;
  const int64_t at = int64_t(blockIdx.x) * width + int64_t(blockIdx.y) * head_dim;
  const int64_t base = src * width + int64_t(blockIdx.y) * head_dim;
  const float* orow = o + src * o_stride + int64_t(blockIdx.y) * head_dim;
  float sum = 0;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) sum += h[base + c];
  const float mean = BlockSum(sum, scratch) / head_dim;
  float var = 0;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) var += (h[base + c] - mean) * (h[base + c] - mean);
  const float inv = rsqrtf(BlockSum(var, scratch) / head_dim + eps);
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    const int wi = blockIdx.y * head_dim + c;
    float v = (h[base + c] - mean) * inv * w[wi];
    if (b) v += b[wi];
    StoreActivation(out, bf16, count, at + c, Gated(v, orow[c]));
  }
}

__device__ __forceinline__ float4 Sub(float4 a, float s) { return make_float4(a.x - s, a.y - s, a.z - s, a.w - s); }
__device__ __forceinline__ float Dot(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

// The vector form: the head's values and its o read once, together, into registers (kPer
// float4s per thread), so the two reductions wait on one round of loads.
template <int kPer>
__global__ void __launch_bounds__(1024, 1)
    HeadNormGateVec4Kernel(const float4* h, const float4* o, int64_t o_stride4, const int32_t* src_rows,
                           const float4* w, const float4* b, int heads, int hd4, int64_t count, float eps, float* out,
                           Bf16Activation bf16) {
  AllowDependentLaunch();
  // The weights before the wait where registers allow, as RmsNormVec4Kernel's.
  float4 wv[kPer], bv[kPer];
  if constexpr (kEarlyWeights<kPer>) LoadWeights<kPer>(w, b, blockIdx.y * hd4, hd4, wv, bv);
  WaitForPriorKernels();
  __shared__ float scratch[32];
  const int64_t src = src_rows ? src_rows[blockIdx.x] : blockIdx.x;
  const int64_t at4 = (int64_t(blockIdx.x) * heads + blockIdx.y) * hd4;
  const int64_t base4 = (src * heads + blockIdx.y) * hd4;
  const float4* orow = o + src * o_stride4 + int64_t(blockIdx.y) * hd4;
  float4 v[kPer], og[kPer];
  float sum = 0;
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * blockDim.x;
    v[p] = i < hd4 ? h[base4 + i] : make_float4(0, 0, 0, 0);
    og[p] = i < hd4 ? orow[i] : make_float4(0, 0, 0, 0);
    sum += v[p].x + v[p].y + v[p].z + v[p].w;
  }
  const float mean = BlockSum(sum, scratch) / (4 * hd4);
  float var = 0;
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * blockDim.x;
    if (i < hd4) var += Dot(Sub(v[p], mean), Sub(v[p], mean));
  }
  const float inv = rsqrtf(BlockSum(var, scratch) / (4 * hd4) + eps);
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * blockDim.x;
    if (i >= hd4) continue;
    if constexpr (!kEarlyWeights<kPer>) LoadWeight(w, b, blockIdx.y * hd4 + i, &wv[p], &bv[p]);
    const float4 c = Sub(v[p], mean);
    const float4 r =
        make_float4(Gated(c.x * inv * wv[p].x + bv[p].x, og[p].x), Gated(c.y * inv * wv[p].y + bv[p].y, og[p].y),
                    Gated(c.z * inv * wv[p].z + bv[p].z, og[p].z), Gated(c.w * inv * wv[p].w + bv[p].w, og[p].w));
    StoreActivation4(out, bf16, count, (at4 + i) * 4, r);
  }
}

// Calls launch(std::integral_constant<int, kPer>{}, threads) for a block of up to 1024 threads
// holding kPer (1, 2 or 4) float4s each of a row of n4 float4s; false when n4 > 4096.
template <typename Launch>
bool LaunchByFloat4sPerThread(int n4, Launch&& launch) {
  if (n4 > 4 * 1024) return false;
  const int threads = std::min(1024, (n4 + 31) / 32 * 32);
  const int per = (n4 + threads - 1) / threads;
  if (per == 1) {
    launch(std::integral_constant<int, 1>{}, threads);
  } else if (per == 2) {
    launch(std::integral_constant<int, 2>{}, threads);
  } else {
    launch(std::integral_constant<int, 4>{}, threads);
  }
  return true;
}

template <bool kResidual>
cudaError_t LaunchRmsNorm(float* x, const float* t, int planes, const float* t_bias, const float* w, const float* b,
                          int rows, int d, float eps, float* out, Bf16Activation bf16, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int64_t count = int64_t(rows) * d;
  // float4 access needs 16-byte aligned rows (d % 4 == 0) and aligned vectors.
  const bool aligned = d % 4 == 0 && Aligned16(w) && Aligned16(b) && Aligned16(x) && Aligned16(t) &&
                       Aligned16(t_bias) && Aligned16(out) && Aligned16(bf16.data);
  if (aligned && LaunchByFloat4sPerThread(d / 4, [&](auto per, int threads) {
        LaunchDependent(RmsNormVec4Kernel<decltype(per)::value, kResidual>, rows, threads, 0, stream,
                        reinterpret_cast<float4*>(x), reinterpret_cast<const float4*>(t), planes,
                        reinterpret_cast<const float4*>(t_bias), reinterpret_cast<const float4*>(w),
                        reinterpret_cast<const float4*>(b), d / 4, count, eps, out, bf16);
      })) {
    return cudaGetLastError();
  }
  LaunchDependent(RmsNormKernel<kResidual>, rows, 256, 0, stream, x, t, planes, t_bias, w, b, d, count, eps, out, bf16);
  return cudaGetLastError();
}

}  // namespace

cudaError_t RmsNorm(const float* x, const float* w, const float* b, int rows, int d, float eps, float* out,
                    Bf16Activation bf16, cudaStream_t stream) {
  // Without a residual the kernels only read x.
  return LaunchRmsNorm<false>(const_cast<float*>(x), nullptr, 0, nullptr, w, b, rows, d, eps, out, bf16, stream);
}

cudaError_t ResidualRmsNorm(float* x, const GemmPlanes& t, const float* t_bias, const float* w, const float* b,
                            int rows, int d, float eps, float* out, Bf16Activation bf16, cudaStream_t stream) {
  if (t.planes < 1) return cudaErrorInvalidValue;
  return LaunchRmsNorm<true>(x, t.t, t.planes, t_bias, w, b, rows, d, eps, out, bf16, stream);
}

cudaError_t HeadNormGate(const float* h, const float* o, int64_t o_stride, const int32_t* src_rows, const float* w,
                         const float* b, int rows, int heads, int head_dim, float eps, float* out, Bf16Activation bf16,
                         cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int64_t count = int64_t(rows) * heads * head_dim;
  const bool aligned = head_dim % 4 == 0 && o_stride % 4 == 0 && Aligned16(h) && Aligned16(o) && Aligned16(w) &&
                       Aligned16(b) && Aligned16(out) && Aligned16(bf16.data);
  if (aligned && LaunchByFloat4sPerThread(head_dim / 4, [&](auto per, int threads) {
        LaunchDependent(HeadNormGateVec4Kernel<decltype(per)::value>, dim3(rows, heads), threads, 0, stream,
                        reinterpret_cast<const float4*>(h), reinterpret_cast<const float4*>(o), o_stride / 4,
                        src_rows, reinterpret_cast<const float4*>(w), reinterpret_cast<const float4*>(b), heads,
                        head_dim / 4, count, eps, out, bf16);
      })) {
    return cudaGetLastError();
  }
  LaunchDependent(HeadNormGateKernel, dim3(rows, heads), 128, 0, stream, h, o, o_stride, src_rows, w, b, heads,
                  head_dim, count, eps, out, bf16);
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
