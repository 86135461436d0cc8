// MlstmStep: one decode token per sequence through one mLSTM layer, bandwidth-bound on the
// state (each C read once and written once).
//
// Maths (DESIGN §3), per sequence s (row s of the inputs, state slot seq_slot[s]) and head h,
// with q̂ = q / sqrt(dqk) and gates from MlstmGates (soft cap, logsigmoid, stabiliser):
//   C' = f C + i k vᵀ            C [dqk, dv], k [dqk], v [dv]
//   n' = f n + i k
//   h  = (q̂ᵀ C') / (max(|q̂ᵀ n'|, exp(-m')) + eps)
// C' is written here (not for a deferred sequence: speculative verify of one token), and so are
// n' and m' where a head's column tiles fit one thread-block cluster (StepWritesNm): every tile
// advances a private n' for its denominator, arrives at the cluster barrier once it has read n
// and m, and the first tile writes n' and m' after the barrier, so no tile reads them
// half-written. Otherwise MlstmNormalizer writes them afterwards (mlstm_common.cuh), launched
// by the caller (*nm_left). The bits are the normaliser's: the same arithmetic on the same
// values.
// Shapes/layout: q, k, v, gates are column slices of [rows, proj_stride] fp32; h [rows,
// heads*dv] fp32; the state pool of MlstmStateRef in fp32 or bf16, rows of C 16-byte aligned.
// Launch: grid (ceil(dv / kCols), heads, num_seqs), block kTileThreads, clusters of a head's
// tiles when it writes n' and m' (MlstmStepBesideFresh flattens the grid to 1-D with new
// one-chunk prompts' blocks among the step's: FreshBeside below).
// A block owns kCols columns of one head's C (64 fp32 or 128 bf16: 256 bytes of each row).
// Thread t reads kVec consecutive columns (16 bytes: 4 fp32 or 8 bf16) of the rows rg,
// rg + kRowGroups, ... (rg = t / kGroups, at most kRows rows): a warp covers two whole 256-byte
// row segments. The thread's rows are copied with cp.async into shared memory (kRows x 16 bytes
// per thread, 64 KB per block at 16 rows) before the q̂/k/n prologue, so C's latency overlaps it
// without holding registers. Partial sums of q̂ᵀC' per thread are reduced over the row groups
// in shared memory. Summation order depends only on the shape, so a sequence gives the same bits
// alone or in any batch.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "kernels/dependent_launch.cuh"
#include "kernels/fresh_beside_layout.h"
#include "kernels/mlstm_common.cuh"
#include "kernels/mlstm_tile.cuh"
#include "kernels/mlstm_fresh_chunk.cuh"

namespace xlserve::kernels {
namespace {

// MlstmStepBesideFresh: the same launch with the blocks of new one-chunk prompts
// (mlstm_fresh_chunk.cuh) among the step's, in the 1-D grid of FreshBesideLayout: units of a
// head's column tiles (one cluster) when the step writes n and m, else of single blocks,
// spread over the first 1 / kFreshSpread of the launch. Why: on
// their own stream the prompts' kernels got SMs only as the step's ~2,000 resident blocks left
// them, so a 128-token prompt beside 63 decode rows still added its chunkwise chain after the
// step (H200, 7B shape: 9.2 ms a pass, against 8.6 with no chunkwise kernels at all). Dispatched
// first, all together, they took nearly every SM while the step waited (8.7 ms); spread over
// the first half of the launch (kFreshSpread) they run beside it (8.55-8.61 ms). Their blocks
// are latency-bound and the step's bandwidth-bound, so sharing SMs costs the step little.
constexpr int kFreshSpread = 2;
struct FreshBeside {
  MlstmParams p;
  int max_tokens = 0;
  FreshBesideLayout layout;
};
// A plain step's launch carries no second MlstmParams.
struct NoFresh {};
template <bool kFresh>
using FreshArg = std::conditional_t<kFresh, FreshBeside, NoFresh>;

// The most column tiles a head may have for the step to write n' and m' itself: the portable
// cluster size. Why it should: the normaliser's launch cost ~2.6 us a layer on the H200 (7B
// shape, ncu), and counting the tiles' arrivals with an atomic and a fence instead made every
// batch size slower (DESIGN §6).
constexpr int kMaxClusterTiles = 8;
static_assert(TileShape<float>::kRowGroups * kTileMaxRows <= kTileThreads &&
                  TileShape<__nv_bfloat16>::kRowGroups * kTileMaxRows <= kTileThreads,
              "dqk <= kTileThreads: a thread advances at most one element of n");

int StepTiles(const MlstmParams& p) {
  return p.state.type == StateType::kF32 ? TileShape<float>::Tiles(p.dv) : TileShape<__nv_bfloat16>::Tiles(p.dv);
}

// Whether the step's blocks are all resident at once, at the two blocks an SM its
// __launch_bounds__ asks for. Only then do clusters and C's loads before the PDL wait pay: over
// several waves, a cluster waits for a GPC to free a slot for each of its tiles, and the first
// wave's early loads compete with the kernel ahead for bandwidth. Measured with both at every
// batch size (H100, 7B shape, four runs each): decode at B = 64 took 1% longer in every run, a
// pass with a 128-token prompt beside 63 decode rows 10.4-11.2 ms against 10.2-10.6; decode at
// B = 1-8 1-2% less.
bool StepFitsOneWave(const MlstmParams& p) {
  return int64_t(StepTiles(p)) * p.heads * p.num_seqs <= 2 * int64_t(DeviceSmCount());
}

// Whether a plain step writes n' and m' itself: a head's tiles are one block, or one cluster
// (sm_90, where programmatic launches work too) in a grid of one wave.
bool StepWritesNm(const MlstmParams& p) {
  const int tiles = StepTiles(p);
  return tiles == 1 || (tiles <= kMaxClusterTiles && DependentLaunchSupported() && StepFitsOneWave(p));
}

// With kFresh the prompts' code would take 128 registers a thread, two blocks an SM; three, as
// the step's shared memory allows, keep the step's loads in flight (a few bytes spill).
// kWritesNm: a head's tiles are one cluster (the grid's x dimension, or one unit of the 1-D grid
// beside new prompts), and the block of tile 0 writes n' and m'. load_early: C's loads go out
// before the wait for the kernel ahead (StepFitsOneWave; plain steps only: beside new prompts
// every block waits first, as the prompt blocks read this pass's projections).
//
// Beside new prompts in single-block units (kSingleBeside: no clusters, the B = 64 serving pass)
// the kernel walks FreshBesideLayout's grid with the arithmetic it had before units, and reads
// its row before C's address, so that it compiles to the same SASS as then. Written through
// FreshBesideLayout::Of(), with the same registers and the same block order, the compiler
// scheduled the prompt blocks differently and the stage took 5% longer (H100, 7B shape, bf16:
// 3.85 against 3.67 ms a pass with a 128-token prompt beside 63 decode rows, in every run).
template <typename T, int kRows, Products kP, bool kFresh, bool kWritesNm>
__global__ void __launch_bounds__(kTileThreads, kFresh ? 3 : 2)
    MlstmStepKernel(MlstmParams p, FreshArg<kFresh> fresh, bool load_early) {
  AllowDependentLaunch();
  if constexpr (kFresh) WaitForPriorKernels();
  using S = TileShape<T>;
  constexpr bool kSingleBeside = kFresh && !kWritesNm;
  int seq = blockIdx.z, head = blockIdx.y, tile = blockIdx.x;
  if constexpr (kFresh) {
    int step_block;
    extern __shared__ float4 fresh_smem[];
    if constexpr (!kSingleBeside) {
      const FreshBesideLayout::Role role = fresh.layout.Of(blockIdx.x);
      if (role.fresh) {
        if (role.index < fresh.layout.fresh_blocks) {
          FreshChunkBlock<T, kP>(fresh.p, fresh.max_tokens, role.index, reinterpret_cast<float*>(fresh_smem));
        }
        return;
      }
      step_block = role.index;
    } else {  // Of() at unit 1
      const int b = blockIdx.x, r = fresh.layout.every;
      step_block = b - fresh.layout.fresh_blocks;
      if (b < fresh.layout.fresh_blocks * r) {
        if (b % r == r - 1) {
          FreshChunkBlock<T, kP>(fresh.p, fresh.max_tokens, b / r, reinterpret_cast<float*>(fresh_smem));
          return;
        }
        step_block = b / r * (r - 1) + b % r;
      }
    }
    const int tiles = TileShape<T>::Tiles(p.dv);
    tile = step_block % tiles;
    head = step_block / tiles % p.heads;
    seq = step_block / tiles / p.heads;
  }
  extern __shared__ uint4 step_smem[];  // this block's rows of C [kRows][kTileThreads], then q̂ [dqk], k [dqk]
  uint4* c_s = step_smem;
  float* q_s = reinterpret_cast<float*>(step_smem + kRows * kTileThreads);
  float* k_s = q_s + p.dqk;
  __shared__ float part[S::kRowGroups][S::kCols + 1];
  __shared__ float scratch[32];

  // Column tiles fastest: the blocks that share C's rows run side by side.
  int row = kSingleBeside ? p.seq_row_begin[seq] : 0;
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  const int cg = threadIdx.x % S::kGroups, rg = threadIdx.x / S::kGroups;
  const int col0 = tile * S::kCols + cg * S::kVec;
  const bool has_cols = col0 < p.dv;
  // C's loads go out first, with load_early before the wait for the kernel ahead, and land while
  // it finishes and the prologue below waits on its own loads. Early is safe because no kernel
  // that may still run writes a decode row's C: the pass's kernels write only their own rows'
  // slots, and whatever wrote this slot before (the last pass, ApplyCommits, a slot copy)
  // precedes the pass's upload of its index arrays (ForwardPass::Prepare), a copy and so a full
  // barrier on the stream. Those arrays are all this reads of what the stream wrote.
  const bool early = !kFresh && load_early;
  if (early) StageTileRows<T, kRows>(st.c, p.dqk, p.dv, rg, col0, has_cols, c_s);
  if constexpr (!kFresh) WaitForPriorKernels();
  if (!early) StageTileRows<T, kRows>(st.c, p.dqk, p.dv, rg, col0, has_cols, c_s);
  if constexpr (!kSingleBeside) row = p.seq_row_begin[seq];
  const int64_t in_row = int64_t(row) * p.proj_stride;
  const GateFactors g = MlstmGates(p.igate[in_row + head], p.fgate[in_row + head], *st.m, p.gate_cap);
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  const bool write_state = !SeqDeferred(p, seq);

  // q̂ and k to shared memory; q̂ᵀn' from this block's own n'.
  float qn = 0, n_next = 0;  // n_next: n'[threadIdx.x] (dqk <= kTileThreads)
  for (int i = threadIdx.x; i < p.dqk; i += kTileThreads) {
    const float q = p.q[in_row + int64_t(head) * p.dqk + i] * scale;
    const float k = p.k[in_row + int64_t(head) * p.dqk + i];
    q_s[i] = q;
    k_s[i] = k;
    n_next = g.f * ToFloat(st.n[i]) + g.i * k;
    qn += q * n_next;
  }
  qn = BlockSum(qn, scratch);  // its barriers also publish q_s and k_s
  if constexpr (kWritesNm) ClusterArrive();  // this block is done with n and m

  float v[S::kVec], acc[S::kVec];
#pragma unroll
  for (int e = 0; e < S::kVec; ++e) {
    v[e] = has_cols ? p.v[in_row + int64_t(head) * p.dv + col0 + e] : 0.0f;
    acc[e] = 0;
  }
  WaitStagedRows();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = rg + r * S::kRowGroups;
    if (has_cols && i < p.dqk) {
      float cf[S::kVec];
      Unpack(c_s[r * kTileThreads + threadIdx.x], cf, T{});
      const float ik = g.i * k_s[i], q = q_s[i];
#pragma unroll
      for (int e = 0; e < S::kVec; ++e) {
        cf[e] = g.f * cf[e] + ik * v[e];
        acc[e] += q * cf[e];
      }
      if (write_state) *reinterpret_cast<uint4*>(st.c + int64_t(i) * p.dv + col0) = Pack(cf, T{});
    }
  }
#pragma unroll
  for (int e = 0; e < S::kVec; ++e) part[rg][cg * S::kVec + e] = acc[e];
  __syncthreads();
  if (threadIdx.x < S::kCols) {
    const int col = tile * S::kCols + threadIdx.x;
    if (col < p.dv) {
      float num = 0;
      for (int r = 0; r < S::kRowGroups; ++r) num += part[r][threadIdx.x];
      p.h[int64_t(row) * p.heads * p.dv + int64_t(head) * p.dv + col] =
          num / (fmaxf(fabsf(qn), expf(-g.m)) + p.eps);
    }
  }
  if constexpr (kWritesNm) {
    if (tile == 0) {
      ClusterWait();  // every tile of the head has read n and m
      if (write_state) {
        if (threadIdx.x < p.dqk) st.n[threadIdx.x] = FromFloat<T>(n_next);
        if (threadIdx.x == 0) *st.m = g.m;
      }
    }
  }
}

template <typename T, Products kP, bool kFresh, bool kWritesNm = false>
cudaError_t LaunchStep(const MlstmParams& p, const FreshArg<kFresh>& fresh, cudaStream_t stream) {
  using S = TileShape<T>;
  const int tiles = TileShape<T>::Tiles(p.dv);
  dim3 grid(tiles, p.heads, p.num_seqs);
  if constexpr (kFresh) grid = dim3(fresh.layout.GridBlocks());
  return LaunchByTileRows<T>(p.dqk, [&](auto rows) {
    constexpr int kRows = decltype(rows)::value;
    const size_t step_smem = size_t(kRows) * kTileThreads * sizeof(uint4) + 2 * size_t(p.dqk) * sizeof(float);
    const size_t smem = kFresh ? std::max(step_smem, FreshChunkSmemBytes()) : step_smem;
    // Above the 48 KB default at 16 rows per thread; set once per instantiation, for the
    // largest dqk it serves.
    constexpr auto kKernel = MlstmStepKernel<T, kRows, kP, kFresh, kWritesNm>;
    static const cudaError_t opt_in = cudaFuncSetAttribute(
        kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
        int(std::max(size_t(kRows) * kTileThreads * sizeof(uint4) + 2 * size_t(kRows) * S::kRowGroups * sizeof(float),
                     kFresh ? FreshChunkSmemBytes() : size_t(0))));
    (void)opt_in;  // had it failed, the launch fails and LaunchByTileRows reports that
    LaunchDependentClusters(dim3(kWritesNm ? tiles : 1, 1, 1), kKernel, grid, kTileThreads, smem, stream, p, fresh,
                            StepFitsOneWave(p));
  });
}

}  // namespace

bool MlstmStepSupports(int dqk, int dv, StateType type) {
  const int vec = type == StateType::kF32 ? TileShape<float>::kVec : TileShape<__nv_bfloat16>::kVec;
  const int row_groups =
      type == StateType::kF32 ? TileShape<float>::kRowGroups : TileShape<__nv_bfloat16>::kRowGroups;
  return dqk <= row_groups * kTileMaxRows && dv % vec == 0;
}

cudaError_t MlstmStep(const MlstmParams& p, bool* nm_left, cudaStream_t stream) {
  *nm_left = false;
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmStepSupports(p.dqk, p.dv, p.state.type)) return cudaErrorInvalidValue;
  if (StepWritesNm(p)) {
    return LaunchByStateType(p, [&](auto state) {
      return LaunchStep<decltype(state), Products::k3xTf32, false, true>(p, NoFresh{}, stream);
    });
  }
  *nm_left = true;
  return LaunchByStateType(p, [&](auto state) {
    return LaunchStep<decltype(state), Products::k3xTf32, false>(p, NoFresh{}, stream);
  });
}

cudaError_t MlstmStepBesideFresh(const MlstmParams& p, const MlstmParams& fresh, int fresh_max_tokens, bool* nm_left,
                                 cudaStream_t stream) {
  *nm_left = false;
  if (fresh.num_seqs == 0) return MlstmStep(p, nm_left, stream);
  if (p.num_seqs == 0 || !MlstmStepSupports(p.dqk, p.dv, p.state.type) ||
      !MlstmFreshChunkApplies(fresh, fresh_max_tokens) || fresh.h == nullptr || fresh.seq_defer != nullptr ||
      fresh.state.type != p.state.type) {
    return cudaErrorInvalidValue;
  }
  const bool writes_nm = StepWritesNm(p);
  const auto launch = [&](auto state) {
    using T = decltype(state);
    const int tiles = TileShape<T>::Tiles(p.dv);
    const FreshBeside beside{fresh, fresh_max_tokens,
                             FreshBesideLayout::Make(tiles * p.heads * p.num_seqs,
                                                     FreshChunkBlocks(fresh, fresh_max_tokens), writes_nm ? tiles : 1,
                                                     kFreshSpread)};
    if (writes_nm) {
      return fresh.bf16_products ? LaunchStep<T, Products::kBf16Pair, true, true>(p, beside, stream)
                                 : LaunchStep<T, Products::k3xTf32, true, true>(p, beside, stream);
    }
    return fresh.bf16_products ? LaunchStep<T, Products::kBf16Pair, true>(p, beside, stream)
                               : LaunchStep<T, Products::k3xTf32, true>(p, beside, stream);
  };
  *nm_left = !writes_nm;
  return LaunchByStateType(p, launch);
}

}  // namespace xlserve::kernels
