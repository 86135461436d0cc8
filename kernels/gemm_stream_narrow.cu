// StreamGemmNarrow: StreamGemm's product for 1-32 activation rows with the operands swapped:
// the weights are wgmma's A operand (m64 tiles of weight rows) and the activations its B (an
// N = 8, 16 or 32 row tile), so the tensor-core work a k16 step is 64 x N per weight tile instead
// of 64 padded activation rows x W.
//
// Maths: out[s, c, j] = Σ_{k in slice s} x[c, k] · w[j, k], fp32 accumulation, for the k-slices
// s < S (contiguous runs of 64-wide k-blocks, SliceBlocks); the reader adds the S planes.
// Shapes/dtypes: x bf16 [cols, k], w bf16 [n, k], row-major, k % 8 == 0; out fp32 [S, cols, n].
// Why: a verify pass of one sequence (4 rows) or a decode step at batch 3-8 reads every weight
// once and does little arithmetic. StreamGemm pads those rows to a 64-row warpgroup and pairs
// them with W weight rows a block, so its blocks are few and wide: the 7B q|k|v|o|gates product
// (12304 x 4096) at 4 rows takes 147 blocks on 132 SMs, 3.26 TB/s (H200). Here a block is one
// warpgroup with small stages, two or three blocks share an SM, and tilings of 64 weight rows
// with 2-4 k-slices spread the work over the SMs: 4.02 TB/s for that product, 0.1008 ms for a
// layer's four products at 4 rows against StreamGemm's 0.1103 and the 1-row GEMV's 0.0971.
// Launch: grid (ceil(n / W), S), block 160 threads: one consumer warpgroup and a producer warp;
// W = 64 MT weight rows a block (kStreamGemmNarrowTilings), `kStages` stages of [N rows of x,
// W rows of w] x 64 k in 128-byte swizzled rows (tma_stream.cuh). The producer's thread loads
// the first stages' weights before it waits for the kernel ahead (programmatic dependent
// launch: weights are nobody's output), then x alongside. The warpgroup issues MT wgmma
// m64nNk16 a k16 step, keeps one stage's products in flight, and releases the stage before.
// Thread lane of warp w then holds, per weight tile m, the D fragment of wgmma_ops.cuh: weight
// row 64 m + 16 w + lane / 4 (+ 8) against activation rows 8 (i / 4) + 2 (lane % 4) + i % 2,
// stored as single floats (the plane is [cols, n], the fragment runs along n).
// The summation order depends on k, the slicing and N, never on cols: a row gives the same bits
// alone or with others of the same N.
// StreamGemmNarrowSwiGlu: the FFN's up projection (rows interleaved in kSwiGluGroup groups) with
// SwiGLU as the epilogue. A thread's rows 16 w + lane / 4 and + 8 of a tile are up_gate and up
// of the same FFN column, so it forms silu(g + b_g) · (u + b_u) itself. With S > 1 k-slices the
// S blocks of a weight tile form a thread-block cluster: each leaves its products in its shared
// memory, and the block of slice 0 adds the others' (distributed shared memory) in slice order,
// then applies the epilogue: the sums, and so the bits, of StreamGemmNarrow followed by SwiGlu
// over its planes, without the planes' round trip or a launch.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/device_common.cuh"
#include "kernels/launchers.h"
#include "kernels/tma_stream.cuh"
#include "kernels/wgmma_ops.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kThreads = 160;

template <int MT, int N, int kStages>
struct NarrowShape {
  static constexpr int kXBytes = N * kStreamRowBytes;  // 1024-byte multiple: swizzle alignment
  static constexpr int kStageBytes = kXBytes + MT * 64 * kStreamRowBytes;
  // 1024 bytes to align the stages, 256 for the mbarriers.
  static constexpr int kSmemBytes = 1024 + kStages * kStageBytes + 256;
  static_assert(kSmemBytes <= kStreamSmemPerBlock, "the stages fit in shared memory");
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void ClusterSync() {
  ClusterArrive();
  ClusterWait();
}
// The fp32 at shared address `addr` of the cluster's block `rank`.
__device__ __forceinline__ float LoadFromBlock(uint32_t addr, int rank) {
  uint32_t remote;
  float v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
  return v;
}
#endif

// kSwiGlu: the SwiGLU epilogue (with a cluster of the k-slices) instead of storing planes.
template <int MT, int N, int kStages, bool kSwiGlu>
__global__ void __launch_bounds__(kThreads) StreamGemmNarrowKernel(const __grid_constant__ CUtensorMap xmap,
                                                                   const __grid_constant__ CUtensorMap wmap, int n,
                                                                   int k, int cols, float* out,
                                                                   SwiGluEpilogue epilogue) {
  AllowDependentLaunch();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = NarrowShape<MT, N, kStages>;
  extern __shared__ uint8_t narrow_smem[];
  const uint32_t base = (SharedAddress(narrow_smem) + 1023) & ~1023u;
  const uint32_t full = base + kStages * S::kStageBytes, empty = full + 8 * kStages;
  const int slice = blockIdx.y;
  int kb0, iters;
  SliceBlocks(k, slice, gridDim.y, &kb0, &iters);
  const int warp = threadIdx.x / 32;
  InitStageBarriers(full, empty, kStages, 4);

  if (warp == 4) {  // producer
    if (threadIdx.x % 32 == 0) {
      ProduceStages(&xmap, &wmap, blockIdx.x * MT * 64, kb0, iters, kStages, S::kStageBytes, S::kXBytes, base, full,
                    empty);
    } else {
      WaitForPriorKernels();
    }
    if constexpr (kSwiGlu) {
      if (gridDim.y > 1) {  // the consumers' two cluster barriers below
        ClusterSync();
        ClusterSync();
      }
    }
    return;
  }

  WaitForPriorKernels();  // `out` may still be read by the kernel ahead
  float d[MT][N / 2];
  for (int it = 0; it < iters; ++it) {
    const int st = it % kStages;
    BarrierWait(full + 8 * st, (it / kStages) & 1);
    const uint32_t xs = base + st * S::kStageBytes, ws = xs + S::kXBytes;
#pragma unroll
    for (int m = 0; m < MT; ++m) FenceAccumulators(d[m]);
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
    for (int kk = 0; kk < kStreamBlockK / 16; ++kk) {
      // A k16 step is 32 bytes into each swizzled row; the first product overwrites d.
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        Wgmma<N>::Run(d[m], TileDescriptor(ws + m * 64 * kStreamRowBytes + kk * 32), TileDescriptor(xs + kk * 32),
                      it > 0 || kk > 0);
      }
    }
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#pragma unroll
    for (int m = 0; m < MT; ++m) FenceAccumulators(d[m]);
    asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
#pragma unroll
    for (int m = 0; m < MT; ++m) FenceAccumulators(d[m]);
    if (it > 0 && threadIdx.x % 32 == 0) BarrierArrive(empty + 8 * ((it - 1) % kStages));
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#pragma unroll
  for (int m = 0; m < MT; ++m) FenceAccumulators(d[m]);
  const int lane = threadIdx.x % 32;
  if constexpr (kSwiGlu) {
    if (gridDim.y > 1) {
      // Every stage has been read: the products go where the stages were, [MT][N / 2][128].
      float* mine = reinterpret_cast<float*>(narrow_smem + (base - SharedAddress(narrow_smem)));
#pragma unroll
      for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int i = 0; i < N / 2; ++i) mine[(m * (N / 2) + i) * 128 + threadIdx.x] = d[m][i];
      }
      ClusterSync();
      if (slice == 0) {
        for (int r = 1; r < int(gridDim.y); ++r) {
#pragma unroll
          for (int m = 0; m < MT; ++m) {
#pragma unroll
            for (int i = 0; i < N / 2; ++i) {
              d[m][i] += LoadFromBlock(base + 4 * ((m * (N / 2) + i) * 128 + threadIdx.x), r);
            }
          }
        }
      }
      ClusterSync();  // the others' shared memory stays until slice 0 has read it
      if (slice != 0) return;
    }
    // Weight rows j (up_gate) and j + 8 (up) of FFN column 8 (j / 16) + lane / 4.
    const int ffn = n / 2;
    const int64_t count = int64_t(cols) * ffn;
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      const int j = blockIdx.x * MT * 64 + m * 64 + warp * 16 + lane / 4;
      if (j >= n) continue;
      const int fcol = j / 16 * 8 + lane / 4;
      const float bg = epilogue.bias ? epilogue.bias[j] : 0.0f, bu = epilogue.bias ? epilogue.bias[j + 8] : 0.0f;
#pragma unroll
      for (int i = 0; i < N / 2; ++i) {
        if (i / 2 % 2 != 0) continue;
        const int c = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
        if (c >= cols) continue;
        float g = d[m][i], u = d[m][i + 2];
        if (epilogue.bias) g += bg, u += bu;
        StoreActivation(epilogue.out, epilogue.bf16, count, int64_t(c) * ffn + fcol, g / (1.0f + expf(-g)) * u);
      }
    }
    return;
  }
  // The plain form's bias (one k-slice only) is added as CombineSplit adds it to one plane.
  float* o = out + int64_t(slice) * cols * n;
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const int j = blockIdx.x * MT * 64 + m * 64 + warp * 16 + lane / 4 + 8 * (i / 2 % 2);
      const int c = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
      if (j < n && c < cols) o[int64_t(c) * n + j] = epilogue.bias ? d[m][i] + epilogue.bias[j] : d[m][i];
    }
  }
#endif
}

template <int MT, int N, int kStages, bool kSwiGlu>
cudaError_t LaunchNarrow(const void* w, int n, int k, const void* x, int cols, float* out, int slices,
                         const SwiGluEpilogue& epilogue, cudaStream_t stream) {
  using S = NarrowShape<MT, N, kStages>;
  constexpr auto kKernel = StreamGemmNarrowKernel<MT, N, kStages, kSwiGlu>;
  CUtensorMap xmap, wmap;
  cudaError_t e = MapOf(x, k, cols, N, &xmap);
  if (e == cudaSuccess) e = MapOf(w, k, n, MT * 64, &wmap);
  if (e == cudaSuccess) e = AllowDynamicSmem<kKernel>(S::kSmemBytes);
  if (e != cudaSuccess) return e;
  // The SwiGLU form's k-slices meet in a cluster; the plain form's go to planes.
  const dim3 cluster(1, kSwiGlu ? slices : 1, 1);
  return LaunchDependentClusters(cluster, kKernel, dim3((n + MT * 64 - 1) / (MT * 64), slices), kThreads,
                                 S::kSmemBytes, stream, xmap, wmap, n, k, cols, out, epilogue);
}

template <int N, bool kSwiGlu>
cudaError_t LaunchTiling(StreamGemmConfig c, const void* w, int n, int k, const void* x, int cols, float* out,
                         const SwiGluEpilogue& e, cudaStream_t stream) {
  static_assert(sizeof(kStreamGemmNarrowTilings) / sizeof(kStreamGemmNarrowTilings[0]) == 5,
                "one case per tiling");
  switch (c.width * 100 + c.stages) {
    case 6408: return LaunchNarrow<1, N, 8, kSwiGlu>(w, n, k, x, cols, out, c.slices, e, stream);
    case 6412: return LaunchNarrow<1, N, 12, kSwiGlu>(w, n, k, x, cols, out, c.slices, e, stream);
    case 12806: return LaunchNarrow<2, N, 6, kSwiGlu>(w, n, k, x, cols, out, c.slices, e, stream);
    case 12808: return LaunchNarrow<2, N, 8, kSwiGlu>(w, n, k, x, cols, out, c.slices, e, stream);
    case 19206: return LaunchNarrow<3, N, 6, kSwiGlu>(w, n, k, x, cols, out, c.slices, e, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <bool kSwiGlu>
cudaError_t LaunchRows(StreamGemmConfig c, const void* w, int n, int k, const void* x, int cols, float* out,
                       const SwiGluEpilogue& e, cudaStream_t stream) {
  if (cols <= 8) return LaunchTiling<8, kSwiGlu>(c, w, n, k, x, cols, out, e, stream);
  if (cols <= 16) return LaunchTiling<16, kSwiGlu>(c, w, n, k, x, cols, out, e, stream);
  if (cols <= 32) return LaunchTiling<32, kSwiGlu>(c, w, n, k, x, cols, out, e, stream);
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t StreamGemmNarrow(StreamGemmConfig c, const void* w, int n, int k, const void* x, int cols,
                             const float* bias, float* out, cudaStream_t stream) {
  return LaunchRows<false>(c, w, n, k, x, cols, out, SwiGluEpilogue{bias}, stream);
}

cudaError_t StreamGemmNarrowSwiGlu(StreamGemmConfig c, const void* w, int n, int k, const void* x, int cols,
                                   const SwiGluEpilogue& epilogue, cudaStream_t stream) {
  return LaunchRows<true>(c, w, n, k, x, cols, nullptr, epilogue, stream);
}

}  // namespace xlserve::kernels
