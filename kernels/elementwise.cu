// Elementwise and gather kernels of a decode/prefill step.
//
//   EmbeddingGather: out[r, c] = table[ids[r], c]             grid (rows), block 256 over c
//   AddBias:         y[r, n] += bias[n]                        1-D grid over rows*n
//   SplitFloatToBf16: hi[i] = bf16_rn(x[i]); lo[i] = bf16_rn(x[i] - hi[i])   1-D grid
//   SoftCap:         x[i] = cap * tanh(x[i] / cap)             1-D grid
//   AddInPlace:      x[i] += y[i]  (residual stream)           1-D grid
//   SwiGlu:          g[i] = g[i] * sigmoid(g[i]) * u[i]        1-D grid
//   GatherRows:      out[i, c] = x[rows[i], c]                 grid (count), block 256 over c
// All activations fp32 row-major; weights F32 or BF16 (weight_load.cuh).
#include <cuda_bf16.h>

#include "kernels/launchers.h"
#include "kernels/weight_load.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kThreads = 256;

unsigned Blocks(int64_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

__global__ void EmbeddingGatherKernel(const void* table, WeightType type, const int32_t* ids, int d, float* out) {
  const int64_t row = ids[blockIdx.x];
  for (int c = threadIdx.x; c < d; c += blockDim.x) out[int64_t(blockIdx.x) * d + c] = LoadWeight(table, type, row * d + c);
}

__global__ void AddBiasKernel(float* y, const void* bias, WeightType type, int n, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) y[i] += LoadWeight(bias, type, i % n);
}

__global__ void SplitFloatToBf16Kernel(const float* in, __nv_bfloat16* hi, __nv_bfloat16* lo, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) {
    const __nv_bfloat16 h = __float2bfloat16_rn(in[i]);
    hi[i] = h;
    lo[i] = __float2bfloat16_rn(in[i] - __bfloat162float(h));
  }
}

__global__ void SoftCapKernel(float* x, int64_t count, float cap) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] = cap * tanhf(x[i] / cap);
}

__global__ void AddInPlaceKernel(float* x, const float* y, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] += y[i];
}

__global__ void SwiGluKernel(float* g, const float* u, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) {
    const float a = g[i];
    g[i] = a / (1.0f + expf(-a)) * u[i];
  }
}

__global__ void GatherRowsKernel(const float* x, const int32_t* rows, int d, float* out) {
  const int64_t src = rows[blockIdx.x];
  for (int c = threadIdx.x; c < d; c += blockDim.x) out[int64_t(blockIdx.x) * d + c] = x[src * d + c];
}

}  // namespace

cudaError_t EmbeddingGather(const void* table, WeightType type, const int32_t* ids, int rows, int d, float* out,
                            cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  EmbeddingGatherKernel<<<rows, kThreads, 0, stream>>>(table, type, ids, d, out);
  return cudaGetLastError();
}

cudaError_t AddBias(float* y, const void* bias, WeightType type, int rows, int n, cudaStream_t stream) {
  const int64_t count = int64_t(rows) * n;
  if (count == 0) return cudaSuccess;
  AddBiasKernel<<<Blocks(count), kThreads, 0, stream>>>(y, bias, type, n, count);
  return cudaGetLastError();
}

cudaError_t SplitFloatToBf16(const float* in, void* hi, void* lo, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  SplitFloatToBf16Kernel<<<Blocks(count), kThreads, 0, stream>>>(in, static_cast<__nv_bfloat16*>(hi),
                                                                  static_cast<__nv_bfloat16*>(lo), count);
  return cudaGetLastError();
}

cudaError_t SoftCap(float* x, int64_t count, float cap, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  SoftCapKernel<<<Blocks(count), kThreads, 0, stream>>>(x, count, cap);
  return cudaGetLastError();
}

cudaError_t AddInPlace(float* x, const float* y, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  AddInPlaceKernel<<<Blocks(count), kThreads, 0, stream>>>(x, y, count);
  return cudaGetLastError();
}

cudaError_t SwiGlu(float* gate, const float* up, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  SwiGluKernel<<<Blocks(count), kThreads, 0, stream>>>(gate, up, count);
  return cudaGetLastError();
}

cudaError_t GatherRows(const float* x, const int32_t* rows, int count, int d, float* out, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  GatherRowsKernel<<<count, kThreads, 0, stream>>>(x, rows, d, out);
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
