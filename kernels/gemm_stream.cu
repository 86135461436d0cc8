// StreamGemm: a bf16 weight GEMM for 1-192 activation rows that streams the weights through
// TMA into a ring of shared-memory stages and multiplies them with wgmma (sm_90a).
//
// Maths: out[s, c, j] = Σ_{k in slice s} x[c, k] · w[j, k], fp32 accumulation, for the k-slices
// s < S (contiguous ranges of 64-wide k-blocks); the reader adds the S planes (GemmPlanes).
// Shapes/dtypes: x bf16 [cols, k] and w bf16 [n, k], row-major (K-major operands), k % 8 == 0
// (TMA strides are 16-byte multiples), n even; out fp32 [S, cols, n].
// Why: at 65-192 rows a GEMM of the 7B shape sits near the ridge, where cuBLASLt's kernels
// neither stream the weights at the copy rate nor start before the previous kernel ends. This
// one is launched as a programmatic dependent: a block loads its first weight stages before it
// waits for the kernel ahead, which only writes x and reads earlier planes.
// Launch: grid (ceil(n / W), S), block 128 * G + 32 threads, 1 block per SM (its stages fill
// shared memory); W (kStreamGemmWidths) weight rows per block, G = ceil(cols / 64) consumer
// warpgroups of 64 activation rows. The last warp is the producer: one thread issues, per stage,
// a TMA box of x [64 G rows, 64 k] and of w [W rows, 64 k] (128-byte swizzled rows; rows past
// cols or n and k past the end arrive as zeros) onto the stage's "full" mbarrier. Warpgroup g
// waits for it, issues four wgmma m64nWk16 over its rows against the stage's w, commits, and
// once the previous stage's products are done releases that stage's "empty" mbarrier for the
// producer to refill. Each thread then stores its fragment (float2 per row and column pair),
// or with the SwiGLU epilogue (StreamGemmSwiGlu: weight rows interleaved in kSwiGluGroup groups,
// W % 16 == 0, one k-slice) forms silu(g + b_g) * (u + b_u) from the column groups 2 i (up_gate)
// and 2 i + 1 (up) it holds for the same FFN columns and stores that as fp32 (optional) and bf16
// [cols, n / 2]: the fp32 [cols, n] product never reaches memory.
#include <cuda.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

#include "kernels/dependent_launch.cuh"
#include "kernels/launchers.h"
#include "kernels/tma_stream.cuh"
#include "kernels/wgmma_ops.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kMaxStages = 8;

template <int W, int G>
struct StreamShape {
  static constexpr int kXBytes = G * 64 * kStreamRowBytes;
  static constexpr int kStageBytes = kXBytes + W * kStreamRowBytes;
  // 1024 bytes to align the stages (the swizzle repeats every 8 rows), 256 for the mbarriers.
  static constexpr int kStages = std::min(kMaxStages, (kStreamSmemPerBlock - 1024 - 256) / kStageBytes);
  static constexpr int kSmemBytes = 1024 + kStages * kStageBytes + 256;
  static constexpr int kThreads = G * 128 + 32;
};

// kSwiGlu: the SwiGLU epilogue (SwiGluEpilogue) instead of storing `out`.
template <int W, int G, bool kSwiGlu>
__global__ void __launch_bounds__(StreamShape<W, G>::kThreads, 1)
    StreamGemmKernel(const __grid_constant__ CUtensorMap xmap, const __grid_constant__ CUtensorMap wmap, int n, int k,
                     int cols, float* out, SwiGluEpilogue epilogue) {
  AllowDependentLaunch();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = StreamShape<W, G>;
  extern __shared__ uint8_t stream_smem[];
  const uint32_t base = (SharedAddress(stream_smem) + 1023) & ~1023u;
  const uint32_t full = base + S::kStages * S::kStageBytes, empty = full + 8 * kMaxStages;
  const int slice = blockIdx.y;
  int kb0, iters;
  SliceBlocks(k, slice, gridDim.y, &kb0, &iters);
  const int warp = threadIdx.x / 32;
  InitStageBarriers(full, empty, S::kStages, G * 4);

  if (warp == G * 4) {  // producer
    if (threadIdx.x % 32 == 0) {
      ProduceStages(&xmap, &wmap, blockIdx.x * W, kb0, iters, S::kStages, S::kStageBytes, S::kXBytes, base, full,
                    empty);
    } else {
      WaitForPriorKernels();
    }
    return;
  }

  // Consumers: warpgroup g owns activation rows 64 g .. 64 g + 63 against all W weight rows.
  WaitForPriorKernels();  // `out` may still be read by the kernel ahead
  const int g = warp / 4;
  float d[W / 2];
  for (int it = 0; it < iters; ++it) {
    const int st = it % S::kStages;
    BarrierWait(full + 8 * st, (it / S::kStages) & 1);
    const uint32_t xs = base + st * S::kStageBytes + g * 64 * kStreamRowBytes;
    const uint32_t ws = base + st * S::kStageBytes + S::kXBytes;
    FenceAccumulators(d);
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
    for (int kk = 0; kk < kStreamBlockK / 16; ++kk) {
      // A k16 step is 32 bytes into each swizzled row; the first product overwrites d.
      Wgmma<W>::Run(d, TileDescriptor(xs + kk * 32), TileDescriptor(ws + kk * 32), it > 0 || kk > 0);
    }
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    FenceAccumulators(d);
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
    FenceAccumulators(d);
    if (it > 0 && threadIdx.x % 32 == 0) BarrierArrive(empty + 8 * ((it - 1) % S::kStages));
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  FenceAccumulators(d);
  const int lane = threadIdx.x % 32;
  const int row = g * 64 + (warp % 4) * 16 + lane / 4;
  if constexpr (kSwiGlu) {
    // Column groups 2 i and 2 i + 1 of 8 hold up_gate and up of the same FFN columns; a thread
    // has the same two columns of each, for rows `row` and row + 8.
    const int ffn = n / 2;
#pragma unroll
    for (int i = 0; i < W / 16; ++i) {
      const int col = blockIdx.x * W + 16 * i + 2 * (lane % 4);
      if (col >= n) continue;
      const int fcol = col / 16 * 8 + col % 16;
      float2 bg = make_float2(0.0f, 0.0f), bu = bg;
      if (epilogue.bias) {
        bg = *reinterpret_cast<const float2*>(epilogue.bias + col);
        bu = *reinterpret_cast<const float2*>(epilogue.bias + col + kSwiGluGroup);
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = row + 8 * h;
        if (r >= cols) continue;
        float gate[2] = {d[8 * i + 2 * h], d[8 * i + 2 * h + 1]}, up[2] = {d[8 * i + 4 + 2 * h], d[8 * i + 5 + 2 * h]};
        if (epilogue.bias) {
          gate[0] += bg.x, gate[1] += bg.y;
          up[0] += bu.x, up[1] += bu.y;
        }
        float a[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) a[e] = gate[e] / (1.0f + expf(-gate[e])) * up[e];
        const int64_t at = int64_t(r) * ffn + fcol;
        if (epilogue.out) *reinterpret_cast<float2*>(epilogue.out + at) = make_float2(a[0], a[1]);
        *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(epilogue.bf16.data) + at) =
            __floats2bfloat162_rn(a[0], a[1]);
      }
    }
    return;
  }
  // The plain form's bias (one k-slice only) is added as CombineSplit adds it to one plane.
  float* o = out + int64_t(slice) * cols * n;
#pragma unroll
  for (int j = 0; j < W / 8; ++j) {
    const int col = blockIdx.x * W + 8 * j + 2 * (lane % 4);
    if (col >= n) continue;
    const float2 b = epilogue.bias ? *reinterpret_cast<const float2*>(epilogue.bias + col) : make_float2(0.0f, 0.0f);
    if (row < cols) {
      *reinterpret_cast<float2*>(o + int64_t(row) * n + col) = make_float2(d[4 * j] + b.x, d[4 * j + 1] + b.y);
    }
    if (row + 8 < cols) {
      *reinterpret_cast<float2*>(o + int64_t(row + 8) * n + col) = make_float2(d[4 * j + 2] + b.x, d[4 * j + 3] + b.y);
    }
  }
#endif
}

// Writes 1 when this build's code for the running GPU has the sm_90a instructions.
__global__ void StreamGemmProbeKernel(int* has) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *has = 1;
#else
  *has = 0;
#endif
}

template <int W, int G, bool kSwiGlu>
cudaError_t LaunchStream(const void* w, int n, int k, const void* x, int cols, float* out, int slices,
                         const SwiGluEpilogue& epilogue, cudaStream_t stream) {
  using S = StreamShape<W, G>;
  CUtensorMap xmap, wmap;
  cudaError_t e = MapOf(x, k, cols, G * 64, &xmap);
  if (e == cudaSuccess) e = MapOf(w, k, n, W, &wmap);
  if (e == cudaSuccess) e = AllowDynamicSmem<StreamGemmKernel<W, G, kSwiGlu>>(S::kSmemBytes);
  if (e != cudaSuccess) return e;
  return LaunchDependent(StreamGemmKernel<W, G, kSwiGlu>, dim3((n + W - 1) / W, slices), S::kThreads, S::kSmemBytes,
                         stream, xmap, wmap, n, k, cols, out, epilogue);
}

template <int W, bool kSwiGlu>
cudaError_t LaunchWidth(const void* w, int n, int k, const void* x, int cols, float* out, int slices,
                        const SwiGluEpilogue& epilogue, cudaStream_t stream) {
  if (cols <= 64) return LaunchStream<W, 1, kSwiGlu>(w, n, k, x, cols, out, slices, epilogue, stream);
  if (cols <= 128) return LaunchStream<W, 2, kSwiGlu>(w, n, k, x, cols, out, slices, epilogue, stream);
  return LaunchStream<W, 3, kSwiGlu>(w, n, k, x, cols, out, slices, epilogue, stream);
}

}  // namespace

bool StreamGemmAvailable() {
  static const bool available = [] {
    int device = 0, major = 0, minor = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    if (major != 9 || minor != 0 || TensorMapEncoder() == nullptr) return false;
    int* has = nullptr;
    int host = 0;
    bool ok = cudaMalloc(&has, sizeof(int)) == cudaSuccess;
    ok = ok && cudaMemset(has, 0, sizeof(int)) == cudaSuccess;
    if (ok) StreamGemmProbeKernel<<<1, 1>>>(has);
    ok = ok && cudaMemcpy(&host, has, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
    if (has) cudaFree(has);
    cudaGetLastError();
    return ok && host == 1;
  }();
  return available;
}

bool StreamGemmSupports(int n, int k, int cols) {
  return cols >= 1 && cols <= kStreamGemmMaxCols && n >= 2 && n % 2 == 0 && k >= kStreamBlockK && k % 8 == 0;
}

std::vector<StreamGemmConfig> StreamGemmCandidates(int n, int k, int cols, int sms) {
  std::vector<StreamGemmConfig> out;
  if (!StreamGemmSupports(n, k, cols)) return out;
  const int kblocks = (k + kStreamBlockK - 1) / kStreamBlockK;
  for (int width : kStreamGemmWidths) {
    const int tiles = (n + width - 1) / width;
    for (int slices = 1; slices <= kStreamGemmMaxSlices && slices <= kblocks; ++slices) {
      // About one wave: fewer blocks leave SMs idle, more leave a partial second wave.
      const int blocks = tiles * slices;
      if (4 * blocks >= 3 * sms && 2 * blocks <= 3 * sms) out.push_back({width, slices});
    }
  }
  // The narrow kernel's blocks are small and share SMs: every tiling and slicing is timed.
  if (cols <= kStreamGemmNarrowMaxCols) {
    for (const StreamGemmTiling& t : kStreamGemmNarrowTilings) {
      for (int slices = 1; slices <= kStreamGemmMaxSlices && slices <= kblocks; ++slices) {
        out.push_back({t.width, slices, true, t.stages});
      }
    }
  }
  return out;
}

bool StreamGemmRuns(StreamGemmConfig c, int n, int k, int cols) {
  // Every slice needs a k-block: its plane is written from the products.
  if (!StreamGemmSupports(n, k, cols) || c.slices < 1 || c.slices > kStreamGemmMaxSlices ||
      c.slices > (k + kStreamBlockK - 1) / kStreamBlockK) {
    return false;
  }
  if (c.narrow) {
    return cols <= kStreamGemmNarrowMaxCols &&
           std::any_of(std::begin(kStreamGemmNarrowTilings), std::end(kStreamGemmNarrowTilings),
                       [&](const StreamGemmTiling& t) { return t.width == c.width && t.stages == c.stages; });
  }
  return std::find(std::begin(kStreamGemmWidths), std::end(kStreamGemmWidths), c.width) !=
         std::end(kStreamGemmWidths);
}

cudaError_t StreamGemm(StreamGemmConfig c, const void* w, int n, int k, const void* x, int cols, const float* bias,
                       float* out, cudaStream_t stream) {
  if (!StreamGemmRuns(c, n, k, cols) || (bias != nullptr && c.slices != 1)) return cudaErrorInvalidValue;
  if (c.narrow) return StreamGemmNarrow(c, w, n, k, x, cols, bias, out, stream);
  // The plain form reads only the epilogue's bias.
  const SwiGluEpilogue plain{bias};
  switch (c.width) {
    case 64: return LaunchWidth<64, false>(w, n, k, x, cols, out, c.slices, plain, stream);
    case 96: return LaunchWidth<96, false>(w, n, k, x, cols, out, c.slices, plain, stream);
    case 128: return LaunchWidth<128, false>(w, n, k, x, cols, out, c.slices, plain, stream);
    case 168: return LaunchWidth<168, false>(w, n, k, x, cols, out, c.slices, plain, stream);
    case 176: return LaunchWidth<176, false>(w, n, k, x, cols, out, c.slices, plain, stream);
    default: return cudaErrorInvalidValue;
  }
}

bool StreamGemmSwiGluSupports(StreamGemmConfig c, int n, int k, int cols) {
  return StreamGemmRuns(c, n, k, cols) && (c.narrow || c.slices == 1) && c.width % (2 * kSwiGluGroup) == 0 &&
         n % (2 * kSwiGluGroup) == 0;
}

cudaError_t StreamGemmSwiGlu(StreamGemmConfig c, const void* w, int n, int k, const void* x, int cols,
                             const SwiGluEpilogue& epilogue, cudaStream_t stream) {
  if (!StreamGemmSwiGluSupports(c, n, k, cols) || epilogue.bf16.data == nullptr || epilogue.bf16.pair) {
    return cudaErrorInvalidValue;
  }
  if (c.narrow) return StreamGemmNarrowSwiGlu(c, w, n, k, x, cols, epilogue, stream);
  switch (c.width) {
    case 64: return LaunchWidth<64, true>(w, n, k, x, cols, nullptr, 1, epilogue, stream);
    case 96: return LaunchWidth<96, true>(w, n, k, x, cols, nullptr, 1, epilogue, stream);
    case 128: return LaunchWidth<128, true>(w, n, k, x, cols, nullptr, 1, epilogue, stream);
    case 176: return LaunchWidth<176, true>(w, n, k, x, cols, nullptr, 1, epilogue, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace xlserve::kernels
