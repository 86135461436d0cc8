// GemvSmallRows: y[r, n] = sum_k x[r, k] * w[n, k] (+ bias[n]) (+ y[r, n]) for r < rows <=
// kGemvMaxRows, fp32 weights (checkpoints stored in fp32; bf16 weights take the cuBLAS path).
//
// A decode step multiplies a few rows by every weight matrix: one streaming pass over w. One
// warp owns one output feature n: its lanes read w[n, :] in float4s, multiply them by the
// matching x values of every row (x is tiny and stays in L1/L2), keep one fp32 partial sum per
// row and reduce them with shuffles. Block 256 threads = 8 warps = 8 outputs; grid ceil(n / 8).
// Shapes: x [rows, k] fp32 (row stride k), w [n, k] fp32 row-major, y [rows, n] fp32.
// float4 loads need k % 4 == 0 (rows then stay 16-byte aligned); other k take the scalar loop.
// The summation order depends only on k, never on rows: a row gives the same bits alone or in
// a batch.
#include "kernels/dependent_launch.cuh"
#include "kernels/device_common.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;

template <int kRows>
__global__ void GemvKernel(const float* x, const float* w, const float* bias, int n, int k, bool accumulate,
                           float* y) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int lane = threadIdx.x & 31;
  const int out = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (out >= n) return;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0;
  if (k % 4 == 0) {
    const float4* row = reinterpret_cast<const float4*>(w + int64_t(out) * k);
    for (int v = lane; v < k / 4; v += 32) {
      const float4 f = row[v];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float4 xv = reinterpret_cast<const float4*>(x + int64_t(r) * k)[v];
        acc[r] += xv.x * f.x + xv.y * f.y + xv.z * f.z + xv.w * f.w;
      }
    }
  } else {
    for (int c = lane; c < k; c += 32) {
      const float wv = w[int64_t(out) * k + c];
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] += x[int64_t(r) * k + c] * wv;
    }
  }
  const float b = bias ? bias[out] : 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float s = WarpSum(acc[r]) + b;
    if (lane == 0) y[int64_t(r) * n + out] = accumulate ? y[int64_t(r) * n + out] + s : s;
  }
}

template <int kRows>
cudaError_t Launch(const float* x, const float* w, const float* bias, int n, int k, bool accumulate, float* y,
                   cudaStream_t stream) {
  LaunchDependent(GemvKernel<kRows>, (n + kWarpsPerBlock - 1) / kWarpsPerBlock, 32 * kWarpsPerBlock, 0, stream, x, w,
                  bias, n, k, accumulate, y);
  return cudaGetLastError();
}

}  // namespace

cudaError_t GemvSmallRows(const float* x, const float* w, const float* bias, int rows, int n, int k, bool accumulate,
                          float* y, cudaStream_t stream) {
  return LaunchByRowCount(rows, [&](auto r) {
    return Launch<decltype(r)::value>(x, w, bias, n, k, accumulate, y, stream);
  });
}

}  // namespace xlserve::kernels
