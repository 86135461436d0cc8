// The pieces shared by the weight-streaming GEMMs (gemm_stream.cu, gemm_stream_narrow.cu): a
// producer thread moves 64-wide k-blocks of bf16 matrices with TMA into a ring of shared-memory
// stages, counted on each stage's "full" mbarrier; the consumers release a stage on its "empty"
// one. Tiles are K-major in 128-byte swizzled rows (64 bf16 a row, 8-row groups 1024 bytes
// apart), the layout wgmma's descriptors name. sm_90a device code; MapOf is host code.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dependent_launch.cuh"

namespace xlserve::kernels {

constexpr int kStreamBlockK = 64;   // bf16 values in one 128-byte swizzled shared-memory row
constexpr int kStreamRowBytes = 128;
constexpr int kStreamSmemPerBlock = 227 * 1024;  // sm_90's opt-in maximum

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void BarrierInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void BarrierExpectBytes(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void BarrierArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void BarrierWait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  }
}
// The box of `map` at (c0 along k, c1 along rows) into shared memory at dst, counted on bar.
__device__ __forceinline__ void TmaLoad(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
// wgmma descriptor of a K-major tile in 128-byte swizzled rows: 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t TileDescriptor(uint32_t addr) {
  return uint64_t((addr >> 4) & 0x3FFF) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}
// Thread 0 of a block: the "full" and "empty" mbarriers of `stages` stages (8 bytes apart), the
// empty ones counting one arrival per consumer warp; then the block syncs.
__device__ __forceinline__ void InitStageBarriers(uint32_t full, uint32_t empty, int stages, int consumer_warps) {
  if (threadIdx.x == 0) {
    for (int i = 0; i < stages; ++i) {
      BarrierInit(full + 8 * i, 1);
      BarrierInit(empty + 8 * i, consumer_warps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
}
// The producer's thread: k-blocks kb0 .. kb0 + iters - 1 into the ring of `stages` stages at
// `base`, each [x box (x_bytes), w box of the rows from row0], counted on the stage's full
// barrier; a stage is refilled once its empty barrier says the consumers are done. Weights are
// nobody's output: the first stages' weights load before the wait for the kernel ahead.
__device__ __forceinline__ void ProduceStages(const CUtensorMap* xmap, const CUtensorMap* wmap, int row0, int kb0,
                                              int iters, int stages, uint32_t stage_bytes, uint32_t x_bytes,
                                              uint32_t base, uint32_t full, uint32_t empty) {
  const int early = min(iters, stages);
  for (int it = 0; it < early; ++it) {
    BarrierExpectBytes(full + 8 * it, stage_bytes);
    TmaLoad(base + it * stage_bytes + x_bytes, wmap, (kb0 + it) * kStreamBlockK, row0, full + 8 * it);
  }
  WaitForPriorKernels();
  for (int it = 0; it < iters; ++it) {
    const int st = it % stages;
    const uint32_t stage = base + st * stage_bytes;
    if (it >= stages) {
      BarrierWait(empty + 8 * st, ((it / stages) - 1) & 1);
      BarrierExpectBytes(full + 8 * st, stage_bytes);
      TmaLoad(stage + x_bytes, wmap, (kb0 + it) * kStreamBlockK, row0, full + 8 * st);
    }
    TmaLoad(stage, xmap, (kb0 + it) * kStreamBlockK, 0, full + 8 * st);
  }
}
// Keeps the compiler from moving accumulator reads or writes across the asynchronous products.
template <int R>
__device__ __forceinline__ void FenceAccumulators(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
#endif

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's cuTensorMapEncodeTiled, null when the driver has none.
inline EncodeTiled TensorMapEncoder() {
  static const EncodeTiled encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    // The entry point as of CUDA 12.0, the version whose signature EncodeTiled spells.
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return EncodeTiled{nullptr};
    }
    return reinterpret_cast<EncodeTiled>(fn);
  }();
  return encode;
}

// A bf16 [rows, k] row-major matrix read in boxes of `box_rows` rows x 64 k (rows past the end
// and k past the end arrive as zeros).
inline cudaError_t MapOf(const void* p, int k, int rows, int box_rows, CUtensorMap* map) {
  const cuuint64_t dims[2] = {cuuint64_t(k), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(k) * 2};
  const cuuint32_t box[2] = {kStreamBlockK, cuuint32_t(box_rows)};
  const cuuint32_t steps[2] = {1, 1};
  const CUresult r = TensorMapEncoder()(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(p), dims, strides,
                                        box, steps, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// The k-blocks of slice `slice` of `slices`: [*first, *first + *count).
__host__ __device__ inline void SliceBlocks(int k, int slice, int slices, int* first, int* count) {
  const int kblocks = (k + kStreamBlockK - 1) / kStreamBlockK;
  *first = int(int64_t(kblocks) * slice / slices);
  *count = int(int64_t(kblocks) * (slice + 1) / slices) - *first;
}

}  // namespace xlserve::kernels
