// GemvBf16SmallRows: y[r, n] = sum_k x[r, k] * w[n, k] (+ bias[n]) (+ y[r, n]) for r < rows <=
// kGemvMaxRows, bf16 weights and fp32 activations (exact precision) or bf16 ones (bf16
// precision): the decode-step product at batch 1.
//
// Why not cuBLAS here: at one or two rows the product is a pass over w, bound by its bytes; this
// kernel streams w with 16-byte loads at a higher fraction of HBM bandwidth than the bf16 GEMM
// over the split pair (94% for the FFN's up projection of the 7B shape on an H200), and
// multiplies fp32 activations exactly (no hi/lo split). Its fp32 FMAs (8 per weight and row)
// fall behind the weight stream beyond a few rows: the backend uses it for at most two.
// Layout: x [rows, k] fp32 or bf16 (row stride k, 16-byte aligned rows: k % 8 == 0), w [n, k]
// bf16 row-major, y [rows, n] fp32, bias fp32 (nullable).
// Launch: block 256 threads = 8 warps. A block owns kOut consecutive outputs; its 8 warps split
// k into 8 contiguous slices when k is large (kSplit = 8) or each take their own kOut outputs
// (kSplit = 1). A lane reads 8 bf16 of each of its kOut weight rows per iteration and the
// matching 8 values of every activation row (x is tiny and stays in L1/L2), keeping kOut x rows
// fp32 partial sums; warps reduce with shuffles, slices meet in shared memory. The summation
// order depends only on k and n, never on rows: a row gives the same bits alone or in a batch.
// Launched as a dependent kernel (dependent_launch.cuh): each lane's first 16-byte weight loads
// are issued before the wait for the kernel that writes x.
// GemvBf16SwiGlu: the FFN's up projection with SwiGLU in the same launch, for up matrices whose
// up_gate and up rows are interleaved in groups of kSwiGluGroup (launchers.h). Each output group
// takes rows 16 q + j, + 1 of up_gate and 16 q + 8 + j, + 1 of up (j = 0, 2, 4, 6): the same
// rows, slices and order of sums as the plain product, so silu(g) · u of its two FFN columns has
// the bits of GemvBf16SmallRows followed by SwiGlu, without the [rows, 2 ffn] product's round
// trip and a launch a layer.
#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
#include "kernels/device_common.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

constexpr int kWarps = 8;
constexpr int kOut = 4;

// The 8 activations of row r at chunk c (16 bytes of weights) as fp32.
__device__ __forceinline__ void LoadX8(const float* x, int k, int r, int c, float (&xv)[8]) {
  const float4* xr = reinterpret_cast<const float4*>(x + int64_t(r) * k) + 2 * c;
  const float4 a = __ldg(xr), b = __ldg(xr + 1);
  xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w, xv[4] = b.x, xv[5] = b.y, xv[6] = b.z, xv[7] = b.w;
}
__device__ __forceinline__ void LoadX8(const __nv_bfloat16* x, int k, int r, int c, float (&xv)[8]) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(x + int64_t(r) * k) + c);
  const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 f = __bfloat1622float2(b[e]);
    xv[2 * e] = f.x;
    xv[2 * e + 1] = f.y;
  }
}

static_assert(kOut == 4 && kSwiGluGroup == 8, "a SwiGLU output group: two up_gate and two up rows of one group");

// Weight row o < kOut of output group g: consecutive rows, or for SwiGLU two up_gate rows and
// the two up rows of the same FFN columns.
template <bool kSwiGlu>
__device__ __forceinline__ int WeightRow(int g, int o) {
  if constexpr (kSwiGlu) {
    return g / 4 * 2 * kSwiGluGroup + g % 4 * 2 + (o >= 2 ? kSwiGluGroup : 0) + o % 2;
  } else {
    return g * kOut + o;
  }
}

// Writes y (plain), or the SwiGLU activation through `act` (kSwiGlu; n = 2 ffn).
struct GemvOutput {
  float* y = nullptr;
  bool accumulate = false;
  float* act = nullptr;
  Bf16Activation act_bf16{nullptr, false};
};

template <typename X, int kRows, int kSplit, bool kSwiGlu>
__global__ void __launch_bounds__(32 * kWarps) GemvBf16Kernel(const X* x, const __nv_bfloat16* w, const float* bias,
                                                              int n, int k, GemvOutput output) {
  AllowDependentLaunch();
  constexpr int kGroups = kWarps / kSplit;  // output groups per block
  __shared__ float partial[kWarps][kRows][kOut];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int group = warp / kSplit, slice = warp % kSplit;
  const int g_out = blockIdx.x * kGroups + group;
  const int chunks = k / 8;  // 8 bf16 = 16 bytes
  const int per_slice = (chunks + kSplit - 1) / kSplit;
  const int c_begin = slice * per_slice, c_end = min(chunks, c_begin + per_slice);

  const auto load_w = [&](int c, uint4(&raw)[kOut]) {
#pragma unroll
    for (int o = 0; o < kOut; ++o) {
      // Rows past n read a valid row; their sums are dropped.
      const int out = min(WeightRow<kSwiGlu>(g_out, o), n - 1);
      raw[o] = __ldg(reinterpret_cast<const uint4*>(w + int64_t(out) * k) + c);
    }
  };
  float acc[kRows][kOut];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int o = 0; o < kOut; ++o) acc[r][o] = 0;
  }
  const auto accumulate_chunk = [&](int c, const uint4(&raw)[kOut]) {
    float wf[kOut][8];
#pragma unroll
    for (int o = 0; o < kOut; ++o) {
      const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&raw[o]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(b[e]);
        wf[o][2 * e] = f.x;
        wf[o][2 * e + 1] = f.y;
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float xv[8];
      LoadX8(x, k, r, c, xv);
#pragma unroll
      for (int o = 0; o < kOut; ++o) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[r][o] += xv[e] * wf[o][e];
      }
    }
  };
  // The weights depend on no earlier kernel: the first chunk's loads go out before the wait, so
  // they fly while that kernel ends.
  const int c0 = c_begin + lane;
  uint4 first[kOut];
  if (c0 < c_end) load_w(c0, first);
  WaitForPriorKernels();
  if (c0 < c_end) accumulate_chunk(c0, first);
  for (int c = c0 + 32; c < c_end; c += 32) {
    uint4 raw[kOut];
    load_w(c, raw);
    accumulate_chunk(c, raw);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int o = 0; o < kOut; ++o) {
      const float s = WarpSum(acc[r][o]);
      if (lane == 0) partial[warp][r][o] = s;
    }
  }
  __syncthreads();
  // The sum of output o of group g for row r: the bias, then the slices in order.
  const auto sum = [&](int g, int r, int o) {
    const int out = WeightRow<kSwiGlu>(blockIdx.x * kGroups + g, o);
    float s = bias ? bias[out] : 0.0f;
    for (int sl = 0; sl < kSplit; ++sl) s += partial[g * kSplit + sl][r][o];
    return s;
  };
  if constexpr (kSwiGlu) {
    // One thread per (group, row, FFN column of the group's two): SwiGlu's silu(g) · u.
    const int ffn = n / 2;
    for (int t = threadIdx.x; t < kGroups * kRows * 2; t += blockDim.x) {
      const int g = t / (kRows * 2), r = t / 2 % kRows, e = t % 2;
      const int g_index = blockIdx.x * kGroups + g;
      if (g_index * kOut >= n) continue;
      const float gate = sum(g, r, e), up = sum(g, r, 2 + e);
      const int col = g_index / 4 * kSwiGluGroup + g_index % 4 * 2 + e;
      StoreActivation(output.act, output.act_bf16, int64_t(kRows) * ffn, int64_t(r) * ffn + col,
                      gate / (1.0f + expf(-gate)) * up);
    }
  } else {
    // One thread per (group, row, output) writes y.
    for (int t = threadIdx.x; t < kGroups * kRows * kOut; t += blockDim.x) {
      const int g = t / (kRows * kOut), r = (t / kOut) % kRows, o = t % kOut;
      const int out = (blockIdx.x * kGroups + g) * kOut + o;
      if (out >= n) continue;
      const float s = sum(g, r, o);
      float* dst = output.y + int64_t(r) * n + out;
      *dst = output.accumulate ? *dst + s : s;
    }
  }
}

template <typename X, int kRows, bool kSwiGlu>
cudaError_t Launch(const X* x, const __nv_bfloat16* w, const float* bias, int n, int k, const GemvOutput& output,
                   cudaStream_t stream) {
  // Split k across the warps when each warp would otherwise stream long rows alone: more
  // loads in flight per output, and blocks enough to fill the GPU for small n.
  if (k >= 8 * 32 * kWarps) {
    const int blocks = (n + kOut - 1) / kOut;
    LaunchDependent(GemvBf16Kernel<X, kRows, kWarps, kSwiGlu>, blocks, 32 * kWarps, 0, stream, x, w, bias, n, k,
                    output);
  } else {
    const int blocks = (n + kOut * kWarps - 1) / (kOut * kWarps);
    LaunchDependent(GemvBf16Kernel<X, kRows, 1, kSwiGlu>, blocks, 32 * kWarps, 0, stream, x, w, bias, n, k, output);
  }
  return cudaGetLastError();
}

template <bool kSwiGlu>
cudaError_t LaunchRows(const void* x, bool x_bf16, const void* w, const float* bias, int rows, int n, int k,
                       const GemvOutput& output, cudaStream_t stream) {
  const auto* wb = static_cast<const __nv_bfloat16*>(w);
  return LaunchByRowCount(rows, [&](auto r) {
    constexpr int kRows = decltype(r)::value;
    return x_bf16 ? Launch<__nv_bfloat16, kRows, kSwiGlu>(static_cast<const __nv_bfloat16*>(x), wb, bias, n, k,
                                                          output, stream)
                  : Launch<float, kRows, kSwiGlu>(static_cast<const float*>(x), wb, bias, n, k, output, stream);
  });
}

}  // namespace

cudaError_t GemvBf16SmallRows(const void* x, bool x_bf16, const void* w, const float* bias, int rows, int n, int k,
                              bool accumulate, float* y, cudaStream_t stream) {
  if (k % 8 != 0) return cudaErrorInvalidValue;
  GemvOutput output;
  output.y = y;
  output.accumulate = accumulate;
  return LaunchRows<false>(x, x_bf16, w, bias, rows, n, k, output, stream);
}

cudaError_t GemvBf16SwiGlu(const void* x, bool x_bf16, const void* w, const float* bias, int rows, int n, int k,
                           float* act, Bf16Activation act_bf16, cudaStream_t stream) {
  if (k % 8 != 0 || n % (2 * kSwiGluGroup) != 0) return cudaErrorInvalidValue;
  GemvOutput output;
  output.act = act;
  output.act_bf16 = act_bf16;
  return LaunchRows<true>(x, x_bf16, w, bias, rows, n, k, output, stream);
}

}  // namespace xlserve::kernels
