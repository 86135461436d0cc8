// GemvSmallRows: y[r, n] = sum_k x[r, k] * w[n, k] (+ bias[n]) for r < rows <= kGemvMaxRows.
//
// Decode steps multiply a few rows by every weight matrix, so the work is one streaming pass
// over w (memory-bound). One warp owns one output feature n: its lanes read w[n, :] in 16-byte
// vectors (4 fp32 or 8 bf16 values each), multiply them by the matching x values of every row
// (x is tiny and stays in L1/L2), keep one fp32 partial sum per row and reduce them with
// shuffles. Block 256 threads = 8 warps = 8 outputs; grid ceil(n / 8).
// Shapes: x [rows, k] fp32 (row stride k), w [n, k] F32 or BF16 row-major, y [rows, n] fp32.
// Vector loads need k % 8 == 0 and 16-byte aligned rows; other shapes take the scalar loop.
#include <cuda_bf16.h>

#include "kernels/launchers.h"
#include "kernels/weight_load.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;

template <int kRows>
__device__ void Accumulate(const float* x, int k, int col, const float* wv, int count, float* acc) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float* xr = x + int64_t(r) * k + col;
    float s = 0;
    for (int j = 0; j < count; ++j) s += xr[j] * wv[j];
    acc[r] += s;
  }
}

// The vector paths read x in float4s too (rows are 16-byte aligned when k % 8 == 0); the
// products are summed in the same order as Accumulate, so both paths give identical results.
template <int kRows, int kCount>
__device__ void AccumulateVector(const float* x, int k, int col, const float* wv, float* acc) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float4* xr = reinterpret_cast<const float4*>(x + int64_t(r) * k + col);
    float s = 0;
#pragma unroll
    for (int q = 0; q < kCount / 4; ++q) {
      const float4 xv = xr[q];
      s += xv.x * wv[4 * q];
      s += xv.y * wv[4 * q + 1];
      s += xv.z * wv[4 * q + 2];
      s += xv.w * wv[4 * q + 3];
    }
    acc[r] += s;
  }
}

template <int kRows>
__global__ void GemvKernel(const float* x, const void* w, const void* bias, WeightType type, int n, int k,
                           float* y) {
  const int lane = threadIdx.x & 31;
  const int out = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (out >= n) return;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0;
  const bool vector = (k % 8) == 0;
  if (type == WeightType::kBF16 && vector) {
    const uint4* row = reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(w) + int64_t(out) * k);
    for (int v = lane; v < k / 8; v += 32) {
      const uint4 packed = row[v];
      const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&packed);
      float wv[8];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __bfloat1622float2(pairs[j]);
        wv[2 * j] = f.x;
        wv[2 * j + 1] = f.y;
      }
      AccumulateVector<kRows, 8>(x, k, v * 8, wv, acc);
    }
  } else if (type == WeightType::kF32 && vector) {
    const float4* row = reinterpret_cast<const float4*>(static_cast<const float*>(w) + int64_t(out) * k);
    for (int v = lane; v < k / 4; v += 32) {
      const float4 f = row[v];
      const float wv[4] = {f.x, f.y, f.z, f.w};
      AccumulateVector<kRows, 4>(x, k, v * 4, wv, acc);
    }
  } else {
    for (int c = lane; c < k; c += 32) {
      const float wv = LoadWeight(w, type, int64_t(out) * k + c);
      Accumulate<kRows>(x, k, c, &wv, 1, acc);
    }
  }
  const float b = bias ? LoadWeight(bias, type, out) : 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float s = WarpSum(acc[r]);
    if (lane == 0) y[int64_t(r) * n + out] = s + b;
  }
}

template <int kRows>
cudaError_t Launch(const float* x, const void* w, const void* bias, WeightType type, int n, int k, float* y,
                   cudaStream_t stream) {
  GemvKernel<kRows><<<(n + kWarpsPerBlock - 1) / kWarpsPerBlock, 32 * kWarpsPerBlock, 0, stream>>>(x, w, bias, type,
                                                                                                 n, k, y);
  return cudaGetLastError();
}

}  // namespace

cudaError_t GemvSmallRows(const float* x, const void* w, const void* bias, WeightType type, int rows, int n, int k,
                          float* y, cudaStream_t stream) {
  switch (rows) {
    case 0: return cudaSuccess;
    case 1: return Launch<1>(x, w, bias, type, n, k, y, stream);
    case 2: return Launch<2>(x, w, bias, type, n, k, y, stream);
    case 3: return Launch<3>(x, w, bias, type, n, k, y, stream);
    case 4: return Launch<4>(x, w, bias, type, n, k, y, stream);
    case 5: return Launch<5>(x, w, bias, type, n, k, y, stream);
    case 6: return Launch<6>(x, w, bias, type, n, k, y, stream);
    case 7: return Launch<7>(x, w, bias, type, n, k, y, stream);
    case 8: return Launch<8>(x, w, bias, type, n, k, y, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace xlserve::kernels
