// Elementwise, gather and GEMM-epilogue kernels of a forward pass.
//
//   EmbeddingGather: out[r, c] = table[ids[r], c]                   grid (rows), block 256 over c
//   GatherRows:      out[i, c] = x[rows[i], c]                      grid (count), block 256 over c
//   CombineSplit:    y[r, c] = Σ_p t[p, r, c] (+ b[c]) (+ y[r, c])
//                    grid (n / 4 / 256, rows up to 65535) over float4s (n % 4 == 0), or 1-D
//                    over rows * n scalars
//   AddBias:         y[r, c] += b[c]                                1-D grid
//   SoftCap:         x[i] = cap * tanh(x[i] / cap)                  1-D grid
//   SwiGlu:          out[r, c] = silu(gu[r, c]) * gu[r, ffn + c]    1-D grid over rows * ffn
//                    (or the kSwiGluGroup-interleaved columns: launchers.h)
//                    (float4s of rows * ffn / 4 when ffn % 4 == 0)
//                    (gu one plane, or a GEMM's planes, plus bias)
//   GatherRowSegments: dst[dst_rows[i], :] = (src[src_rows[i], a:a+a_len], src[.., b:b+b_len])
//                    grid (count, column blocks), a thread per float4 (or float) of the row
//   ToBf16Activation: bf16 form of x (hi, and lo for a pair)        1-D grid over count
//   ArgmaxRows:      out[r] = argmax_c x[r, c]                      grid (rows), block 256 over c
// Activations fp32 row-major; tables F32 or BF16; biases fp32; bf16 forms as in launchers.h.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/device_common.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

constexpr int kThreads = 256;

unsigned Blocks(int64_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

__global__ void EmbeddingGatherKernel(const void* table, WeightType type, const int32_t* ids, int d, float* out) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int64_t row = ids[blockIdx.x];
  for (int c = threadIdx.x; c < d; c += blockDim.x) out[int64_t(blockIdx.x) * d + c] = LoadAs(table, type, row * d + c);
}

__global__ void GatherRowsKernel(const float* x, const int32_t* rows, int d, float* out) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int64_t src = rows[blockIdx.x];
  for (int c = threadIdx.x; c < d; c += blockDim.x) out[int64_t(blockIdx.x) * d + c] = x[src * d + c];
}

// Vector form: n % 4 == 0 and 16-byte aligned bias, so each float4 lies inside one row; grid
// (ceil(n / 4 / kThreads), min(rows, kMaxGridY)) striding over rows, so the column needs no
// 64-bit division.
constexpr int kMaxGridY = 65535;
__global__ void CombineSplitVec4Kernel(const float4* t, int planes, const float4* bias, int n4, int rows,
                                       bool accumulate, float4* y) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int c4 = blockIdx.x * blockDim.x + threadIdx.x;
  if (c4 >= n4) return;
  const float4 bv = bias ? bias[c4] : make_float4(0, 0, 0, 0);
  const int64_t count4 = int64_t(rows) * n4;
  for (int row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t i = int64_t(row) * n4 + c4;
    float4 r = SumPlanes(t, planes, count4, i);
    if (bias) r = Add(r, bv);
    if (accumulate) r = Add(r, y[i]);
    y[i] = r;
  }
}

__global__ void CombineSplitKernel(const float* t, int planes, const float* bias, int n, int64_t count,
                                   bool accumulate, float* y) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float r = SumPlanes(t, planes, count, i);
  if (bias) r += bias[i % n];
  if (accumulate) r += y[i];
  y[i] = r;
}

__global__ void AddBiasKernel(float* y, const float* bias, int n, int64_t count) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) y[i] += bias[i % n];
}

__global__ void SoftCapKernel(float* x, int64_t count, float cap) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] = cap * tanhf(x[i] / cap);
}

// kVec consecutive floats from p into v (kVec 4: p 16-byte aligned).
template <int kVec>
__device__ __forceinline__ void LoadFloats(const float* p, float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  } else {
    for (int e = 0; e < kVec; ++e) v[e] = p[e];
  }
}

// kVec consecutive columns per thread: 4 when ffn % 4 == 0 and the pointers are 16-byte aligned.
static_assert(kSwiGluGroup % 4 == 0, "a float4 of FFN columns stays inside one interleaved group");
template <int kVec>
__global__ void SwiGluKernel(const float* gu, int planes, const float* bias, bool interleaved, int ffn, int64_t count,
                             float* out, Bf16Activation bf16) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * kVec;
  if (i >= count) return;
  const int64_t r = i / ffn, c = i % ffn;
  // Column of up_gate's value within the row, and how far on up's is.
  const int64_t g_col = interleaved ? c / kSwiGluGroup * 2 * kSwiGluGroup + c % kSwiGluGroup : c;
  const int64_t u_off = interleaved ? kSwiGluGroup : ffn;
  const int64_t at_g = r * 2 * ffn + g_col, at_u = at_g + u_off, plane = 2 * count;
  float g[kVec], u[kVec];
  LoadFloats(gu + at_g, g);
  LoadFloats(gu + at_u, u);
  for (int p = 1; p < planes; ++p) {
    float g_p[kVec], u_p[kVec];
    LoadFloats(gu + p * plane + at_g, g_p);
    LoadFloats(gu + p * plane + at_u, u_p);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      g[e] += g_p[e];
      u[e] += u_p[e];
    }
  }
  if (bias) {
    float g_b[kVec], u_b[kVec];
    LoadFloats(bias + g_col, g_b);
    LoadFloats(bias + g_col + u_off, u_b);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      g[e] += g_b[e];
      u[e] += u_b[e];
    }
  }
  float a[kVec];
#pragma unroll
  for (int e = 0; e < kVec; ++e) a[e] = g[e] / (1.0f + expf(-g[e])) * u[e];
  if constexpr (kVec == 4) {
    StoreActivation4(out, bf16, count, i, make_float4(a[0], a[1], a[2], a[3]));
  } else {
    StoreActivation(out, bf16, count, i, a[0]);
  }
}

// One value of V (float, or float4 where every offset allows) per thread: blockIdx.y spreads a
// row over blocks, so that no thread waits on a chain of loads. Offsets and lengths in V units.
template <typename V>
__global__ void GatherRowSegmentsKernel(const V* src, int64_t src_stride, int a, int a_len, int b, int b_len,
                                        const int32_t* src_rows, const int32_t* dst_rows, V* dst) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= a_len + b_len) return;
  const V* in = src + int64_t(src_rows[blockIdx.x]) * src_stride;
  dst[int64_t(dst_rows[blockIdx.x]) * (a_len + b_len) + c] = c < a_len ? in[a + c] : in[b + c - a_len];
}

__global__ void ToBf16ActivationKernel(const float* x, int64_t count, Bf16Activation bf16) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  StoreBf16(bf16, count, i, x[i]);
}

// Strict comparisons keep the lowest index among ties and skip NaN and -inf (engine/sampling's
// Argmax on the host).
__global__ void ArgmaxRowsKernel(const float* x, int n, int32_t* out) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  __shared__ float best_v[kThreads];
  __shared__ int best_i[kThreads];
  const float* row = x + int64_t(blockIdx.x) * n;
  float v = -INFINITY;
  int idx = -1;
  for (int c = threadIdx.x; c < n; c += kThreads) {
    if (row[c] > v) {
      v = row[c];
      idx = c;
    }
  }
  best_v[threadIdx.x] = v;
  best_i[threadIdx.x] = idx;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const float ov = best_v[threadIdx.x + stride];
      const int oi = best_i[threadIdx.x + stride];
      if (oi >= 0 && (ov > best_v[threadIdx.x] || (ov == best_v[threadIdx.x] && oi < best_i[threadIdx.x]) ||
                      best_i[threadIdx.x] < 0)) {
        best_v[threadIdx.x] = ov;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = best_i[0];
}

}  // namespace

cudaError_t ArgmaxRows(const float* x, int rows, int n, int32_t* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  LaunchDependent(ArgmaxRowsKernel, rows, kThreads, 0, stream, x, n, out);
  return cudaGetLastError();
}

cudaError_t GatherRowSegments(const float* src, int64_t src_stride, int a, int a_len, int b, int b_len,
                              const int32_t* src_rows, const int32_t* dst_rows, int count, float* dst,
                              cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const bool vec = src_stride % 4 == 0 && a % 4 == 0 && a_len % 4 == 0 && b % 4 == 0 && b_len % 4 == 0 &&
                   Aligned16(src) && Aligned16(dst);
  const int units = (a_len + b_len) / (vec ? 4 : 1);
  const dim3 grid(count, (units + kThreads - 1) / kThreads);
  if (vec) {
    LaunchDependent(GatherRowSegmentsKernel<float4>, grid, kThreads, 0, stream, reinterpret_cast<const float4*>(src),
                    src_stride / 4, a / 4, a_len / 4, b / 4, b_len / 4, src_rows, dst_rows,
                    reinterpret_cast<float4*>(dst));
  } else {
    LaunchDependent(GatherRowSegmentsKernel<float>, grid, kThreads, 0, stream, src, src_stride, a, a_len, b, b_len,
                    src_rows, dst_rows, dst);
  }
  return cudaGetLastError();
}

cudaError_t ToBf16Activation(const float* x, int64_t count, Bf16Activation bf16, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  LaunchDependent(ToBf16ActivationKernel, Blocks(count), kThreads, 0, stream, x, count, bf16);
  return cudaGetLastError();
}

cudaError_t EmbeddingGather(const void* table, WeightType type, const int32_t* ids, int rows, int d, float* out,
                            cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  LaunchDependent(EmbeddingGatherKernel, rows, kThreads, 0, stream, table, type, ids, d, out);
  return cudaGetLastError();
}

cudaError_t GatherRows(const float* x, const int32_t* rows, int count, int d, float* out, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  LaunchDependent(GatherRowsKernel, count, kThreads, 0, stream, x, rows, d, out);
  return cudaGetLastError();
}

cudaError_t CombineSplit(const GemmPlanes& t, const float* bias, int rows, int n, bool accumulate, float* y,
                         cudaStream_t stream) {
  const int64_t count = int64_t(rows) * n;
  if (count == 0) return cudaSuccess;
  if (t.planes < 1) return cudaErrorInvalidValue;
  if (n % 4 == 0 && Aligned16(bias)) {
    LaunchDependent(CombineSplitVec4Kernel, dim3(Blocks(n / 4), std::min(rows, kMaxGridY)), kThreads, 0, stream,
                    reinterpret_cast<const float4*>(t.t), t.planes, reinterpret_cast<const float4*>(bias), n / 4, rows,
                    accumulate, reinterpret_cast<float4*>(y));
  } else {
    LaunchDependent(CombineSplitKernel, Blocks(count), kThreads, 0, stream, t.t, t.planes, bias, n, count, accumulate,
                    y);
  }
  return cudaGetLastError();
}

cudaError_t AddBias(float* y, const float* bias, int rows, int n, cudaStream_t stream) {
  const int64_t count = int64_t(rows) * n;
  if (count == 0) return cudaSuccess;
  LaunchDependent(AddBiasKernel, Blocks(count), kThreads, 0, stream, y, bias, n, count);
  return cudaGetLastError();
}

cudaError_t SoftCap(float* x, int64_t count, float cap, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  LaunchDependent(SoftCapKernel, Blocks(count), kThreads, 0, stream, x, count, cap);
  return cudaGetLastError();
}

cudaError_t SwiGlu(const GemmPlanes& gu, const float* bias, bool interleaved, int rows, int ffn, float* out,
                   Bf16Activation bf16, cudaStream_t stream) {
  const int64_t count = int64_t(rows) * ffn;
  if (count == 0) return cudaSuccess;
  if (gu.planes < 1 || (interleaved && ffn % kSwiGluGroup != 0)) return cudaErrorInvalidValue;
  // A float4 of FFN columns stays inside one group (kSwiGluGroup % 4 == 0).
  if (ffn % 4 == 0 && Aligned16(gu.t) && Aligned16(bias) && Aligned16(out) && Aligned16(bf16.data)) {
    LaunchDependent(SwiGluKernel<4>, Blocks(count / 4), kThreads, 0, stream, gu.t, gu.planes, bias, interleaved, ffn,
                    count, out, bf16);
  } else {
    LaunchDependent(SwiGluKernel<1>, Blocks(count), kThreads, 0, stream, gu.t, gu.planes, bias, interleaved, ffn, count,
                    out, bf16);
  }
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
