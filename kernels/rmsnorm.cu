// RMSNorm and the per-head LayerNorm with the output gate.
//
// RmsNorm:      out[r, c] = x[r, c] / sqrt(mean_c x[r, :]^2 + eps) * w[c] (+ b[c]); ResidualRmsNorm
//               first folds a split-pair GEMM's output into x (x += hi + lo (+ bias)) and
//               writes x back, in place of a separate CombineSplit pass.
//               grid (rows); the sum of squares in fp32 over a block reduction. For d % 4 == 0
//               (d <= 16384) a block of up to 1024 threads holds its row in registers as
//               float4s, read once: a decode step runs 2 x layers of these on one row each, where
//               a 256-thread block re-reading its row took ~13 us per call on an H200. Otherwise
//               block 256 over c, two passes.
// HeadNormGate: for each row r and head h, over its head_dim values g:
//               g <- (g - mean g) / sqrt(var g + eps)   (biased variance, fp32)
//               g <- g * w[h*hd + c] (+ b[...]);  g <- g * sigmoid(o[r, h*hd + c])
//               grid (rows, heads), block 128 over c. Matches transformers' xLSTM
//               multihead_norm followed by sigmoid(ogate) * h.
// x, h, out: fp32 [rows, width] row-major; w, b fp32; both may also write the split pair of
// their output (launchers.h) for a bf16 GEMM that reads it next.
#include <algorithm>
#include <cstdint>

#include "kernels/device_common.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

// x + the pending residual in CombineSplit's order: ((hi + lo) + bias) + x.
__device__ __forceinline__ float WithResidual(float x, float hi, float lo, float bias) { return hi + lo + bias + x; }

// kResidual: x[r] += the split-pair product t (+ t_bias) first, written back (ResidualRmsNorm).
template <bool kResidual>
__global__ void RmsNormKernel(float* x, const float* t, const float* t_bias, const float* w, const float* b, int d,
                              int64_t count, float eps, float* out, void* split) {
  __shared__ float scratch[32];
  float* xr = x + int64_t(blockIdx.x) * d;
  if (kResidual) {
    const int64_t at = int64_t(blockIdx.x) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
      xr[c] = WithResidual(xr[c], t[at + c], t[count + at + c], t_bias ? t_bias[c] : 0.0f);
    }
    __syncthreads();
  }
  float sq = 0;
  for (int c = threadIdx.x; c < d; c += blockDim.x) sq += xr[c] * xr[c];
  const float scale = rsqrtf(BlockSum(sq, scratch) / d + eps);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float v = xr[c] * scale * w[c];
    if (b) v += b[c];
    StoreActivation(out, split, count, int64_t(blockIdx.x) * d + c, v);
  }
}

template <int kPer, bool kResidual>
__global__ void RmsNormVec4Kernel(float4* x, const float4* t, const float* t_bias, const float4* w, const float4* b,
                                  int d4, int64_t count, float eps, float* out, void* split) {
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
      const float4 hi = t[at], lo = t[count / 4 + at];
      const int c = 4 * i;
      v[p] = make_float4(WithResidual(v[p].x, hi.x, lo.x, t_bias ? t_bias[c] : 0.0f),
                         WithResidual(v[p].y, hi.y, lo.y, t_bias ? t_bias[c + 1] : 0.0f),
                         WithResidual(v[p].z, hi.z, lo.z, t_bias ? t_bias[c + 2] : 0.0f),
                         WithResidual(v[p].w, hi.w, lo.w, t_bias ? t_bias[c + 3] : 0.0f));
      xr[i] = v[p];
    }
    sq += v[p].x * v[p].x + v[p].y * v[p].y + v[p].z * v[p].z + v[p].w * v[p].w;
  }
  const float scale = rsqrtf(BlockSum(sq, scratch) / (4 * d4) + eps);
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int i = threadIdx.x + p * blockDim.x;
    if (i >= d4) continue;
    const float4 wv = w[i];
    const float4 bv = b ? b[i] : make_float4(0, 0, 0, 0);
    const float o[4] = {v[p].x * scale * wv.x + bv.x, v[p].y * scale * wv.y + bv.y, v[p].z * scale * wv.z + bv.z,
                        v[p].w * scale * wv.w + bv.w};
    const int64_t at = (int64_t(blockIdx.x) * d4 + i) * 4;
#pragma unroll
    for (int e = 0; e < 4; ++e) StoreActivation(out, split, count, at + e, o[e]);
  }
}

__global__ void HeadNormGateKernel(const float* h, const float* o, int64_t o_stride, const float* w, const float* b,
                                   int heads, int head_dim, int64_t count, float eps, float* out, void* split) {
  __shared__ float scratch[32];
  const int width = heads * head_dim;
  const int64_t base = int64_t(blockIdx.x) * width + int64_t(blockIdx.y) * head_dim;
  const float* orow = o + int64_t(blockIdx.x) * o_stride + int64_t(blockIdx.y) * head_dim;
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
    StoreActivation(out, split, count, base + c, v / (1.0f + expf(-orow[c])));
  }
}

template <bool kResidual>
cudaError_t LaunchRmsNorm(float* x, const float* t, const float* t_bias, const float* w, const float* b, int rows,
                          int d, float eps, float* out, void* split, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int64_t count = int64_t(rows) * d;
  const int d4 = d / 4;
  const auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  // float4 access needs 16-byte aligned rows (d % 4 == 0) and aligned w, b, t.
  const bool aligned = d % 4 == 0 && aligned16(w) && aligned16(b) && aligned16(x) && aligned16(t);
  if (aligned && d4 <= 4 * 1024) {
    const int threads = std::min(1024, (d4 + 31) / 32 * 32);
    const int per = (d4 + threads - 1) / threads;
    auto* x4 = reinterpret_cast<float4*>(x);
    const auto* t4 = reinterpret_cast<const float4*>(t);
    const auto* w4 = reinterpret_cast<const float4*>(w);
    const auto* b4 = reinterpret_cast<const float4*>(b);
    if (per == 1) {
      RmsNormVec4Kernel<1, kResidual><<<rows, threads, 0, stream>>>(x4, t4, t_bias, w4, b4, d4, count, eps, out, split);
    } else if (per == 2) {
      RmsNormVec4Kernel<2, kResidual><<<rows, threads, 0, stream>>>(x4, t4, t_bias, w4, b4, d4, count, eps, out, split);
    } else {
      RmsNormVec4Kernel<4, kResidual><<<rows, threads, 0, stream>>>(x4, t4, t_bias, w4, b4, d4, count, eps, out, split);
    }
    return cudaGetLastError();
  }
  RmsNormKernel<kResidual><<<rows, 256, 0, stream>>>(x, t, t_bias, w, b, d, count, eps, out, split);
  return cudaGetLastError();
}

}  // namespace

cudaError_t RmsNorm(const float* x, const float* w, const float* b, int rows, int d, float eps, float* out,
                    void* split, cudaStream_t stream) {
  // Without a residual the kernels only read x.
  return LaunchRmsNorm<false>(const_cast<float*>(x), nullptr, nullptr, w, b, rows, d, eps, out, split, stream);
}

cudaError_t ResidualRmsNorm(float* x, const float* t, const float* t_bias, const float* w, const float* b, int rows,
                            int d, float eps, float* out, void* split, cudaStream_t stream) {
  return LaunchRmsNorm<true>(x, t, t_bias, w, b, rows, d, eps, out, split, stream);
}

cudaError_t HeadNormGate(const float* h, const float* o, int64_t o_stride, const float* w, const float* b, int rows,
                         int heads, int head_dim, float eps, float* out, void* split, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  HeadNormGateKernel<<<dim3(rows, heads), 128, 0, stream>>>(h, o, o_stride, w, b, heads, head_dim,
                                                            int64_t(rows) * heads * head_dim, eps, out, split);
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
