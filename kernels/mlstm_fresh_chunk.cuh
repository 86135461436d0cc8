// The mLSTM of new prompts of one chunk (at most kChunk tokens, each from a reset slot), as one
// set of independent blocks: the common prompt of a serving pass, where the chunkwise kernels'
// chain of scores, then state update, then outputs (mlstm_chunkwise.cu) waited on itself
// beside the decode rows' step kernel.
//
// Maths (mlstm_chunkwise.cu, with the reset state C = 0, n = 0, m = 0 that StatePool::Reset
// leaves): with the chunk's log gates and b_t = Σ_{u ≤ t} lf_u,
//   m_t = b_t + max(0, max_{s ≤ t} (ĩ_s - b_s)),
//   P_ts = (q̂_t · k_s) exp(b_t - b_s + ĩ_s - m_t) for s ≤ t, else 0,
//   h_t = Σ_s P_ts v_s / (max(|Σ_s P_ts|, exp(-m_t)) + eps),
//   C' = Σ_s e_s k_s v_sᵀ,  n' = Σ_s e_s k_s,  m' = m_L,  e_s = exp(b_L - b_s + ĩ_s - m_L).
// No block reads what another writes: every block scans the chunk's gates itself (a few
// hundred operations), the outputs need no state, and the update needs no scores.
//
// Blocks (kFreshThreads threads, FreshChunkSmemBytes() of dynamic shared memory), per sequence
// and head, numbered by FreshChunkBlock's `block`:
//   output blocks, one per 32-token row tile x 128 columns of h: the tile's scores against the
//     keys up to its last token over dqk in slices of 32 (q [32][32], k [keys][32], staged by
//     cp.async one slice ahead), 8 warps of 32 tokens x 16 keys; then P into shared memory and
//     h = P V over the keys in slices of 32 (v [32][128], one slice ahead), 8 warps of 32 tokens
//     x 16 columns; mma tiles as in chunk_mma.cuh (3xTF32 or bf16 pairs, p.bf16_products).
//   update blocks, one per 128 rows x W columns of C (W = 32 beside a step, kUpCols; 64 for
//     new prompts alone, kWideUpCols): the chunk's tokens in halves of 64 (k [64][128] and
//     v [64][W] staged at once, v scaled by e in place), 8 warps of 32 rows x W / 2 columns;
//     the first column tile writes n, and the block of the first row and column tile writes m.
// At the 7B shape (8 heads, dqk 256, dv 512) that is 384 blocks a prompt beside a step, each a
// few µs of latency-bound work. Fewer, longer blocks (all of h's columns per output block,
// 64-column update tiles: 160 a prompt) measured slower inside the step kernel's launch (H200,
// 63 decode rows + a 128-token prompt: 8.76 ms a pass, against 8.55-8.61 with these, in another
// call). Alone, 384 blocks at two an SM are two rounds on 132 SMs, each as long as the slowest
// output block; 64-column update tiles make them 256, one round.
// Shapes/layout as for MlstmChunkwise (launchers.h). Fp32 accumulation; no atomics.
#pragma once

#include "kernels/chunk_mma.cuh"
#include "kernels/mlstm_chunkwise.cuh"

namespace xlserve::kernels {

constexpr int kFreshThreads = 256;
static_assert(kFreshThreads == 2 * kChunk, "a gate scan of kChunk rows by the first half of the block");

namespace fresh_chunk {

constexpr int kRows = kTile;              // tokens of an output block
constexpr int kCols = 128;                // columns of h of an output block
constexpr int kUpRows = 128, kUpCols = 32;  // the tile of C of an update block (beside a step)
constexpr int kWideUpCols = 64;              // the same for new prompts alone (MlstmFreshChunk)
constexpr int kHalf = 64;                 // tokens an update block stages at once
constexpr int kQS = kTile + 4;            // [token][32] slices of q and k: ≡ 4 (mod 32)
constexpr int kPS = kChunk + 4;           // P [kRows][kPS]: ≡ 4
constexpr int kVS = kCols + 8;            // v [key][kVS]: ≡ 8
constexpr int kKS = kUpRows + 8;          // update k [token][kKS]: ≡ 8
template <int kW>
constexpr int kUVS = kW + 8;              // update v [token][kUVS<kW>]: ≡ 8
constexpr int kScoreBuf = (kRows + kChunk) * kQS;  // one q slice and one k slice
static_assert(2 * kTile * kVS <= 2 * kScoreBuf, "the P V slices reuse the score slices' space");
constexpr int kOutFloats = 2 * kScoreBuf + kRows * kPS + kRows;  // slices, P, denominators
constexpr int kUpFloats = kHalf * (kKS + kUVS<kWideUpCols>);
constexpr int kGateAt = kOutFloats > kUpFloats ? kOutFloats : kUpFloats;  // b, ĩ - b, m_t or e
constexpr int kSmemFloats = kGateAt + 3 * kChunk;

__device__ __forceinline__ void WaitStagedButLast() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

// use(s) for s in [0, count), each slice staged (stage(s), into buffer s & 1, cp.async and a
// commit) while the one before it is used.
template <typename Stage, typename Use>
__device__ __forceinline__ void PipelineSlices(int count, Stage&& stage, Use&& use) {
  stage(0);
  for (int s = 0; s < count; ++s) {
    if (s + 1 < count) {
      stage(s + 1);
      WaitStagedButLast();
    } else {
      WaitStaged();
    }
    __syncthreads();
    use(s);
    __syncthreads();  // buffer s & 1 is staged again at s + 2
  }
}

// Blocks per head: output tiles of `row_tiles` x ceil(dv / kCols), then update tiles of
// `up_width` columns.
struct Tiles {
  int out_cols, outs, up_cols, ups;
  __host__ __device__ Tiles(int row_tiles, int dqk, int dv, int up_width)
      : out_cols((dv + kCols - 1) / kCols),
        outs(row_tiles * out_cols),
        up_cols((dv + up_width - 1) / up_width),
        ups(((dqk + kUpRows - 1) / kUpRows) * up_cols) {}
  __host__ __device__ int PerHead() const { return outs + ups; }
};

// The chunk's gate scan by every thread (thread t < len: token t) into b, ĩ - b and m_t, or e_t
// in place of m_t (`want_e`); returns the stabiliser after the chunk.
__device__ __forceinline__ float ScanFreshGates(const MlstmParams& p, int begin, int len, int head, float* g,
                                                bool want_e) {
  const int tid = threadIdx.x;
  const bool live = tid < len;
  const int64_t at = int64_t(begin + tid) * p.proj_stride + head;
  const LogGates lg = live ? MlstmLogGates(p.igate[at], p.fgate[at], p.gate_cap) : LogGates{-INFINITY, 0.0f};
  const ChunkScan sc = ScanChunkGates<kFreshThreads / 32>(lg, live, len, 0.0f);
  if (tid < kChunk) {
    g[tid] = live ? sc.b : 0.0f;
    g[kChunk + tid] = live ? sc.ig_minus_b : -INFINITY;
    g[2 * kChunk + tid] = !live ? 0.0f : want_e ? expf(sc.b_last + sc.ig_minus_b - sc.m_next) : sc.m_t;
  }
  return sc.m_next;
}

template <Products kP>
__device__ __forceinline__ void OutputTile(const MlstmParams& p, int begin, int len, int head, int rt, int ct,
                                           float* smem) {
  const int r0 = rt * kRows, j0 = ct * kCols;
  if (r0 >= len || j0 >= p.dv) return;
  const int rows = min(kRows, len - r0), width = min(kCols, p.dv - j0);
  const int keys = r0 + rows, key_tiles = (keys + kTile - 1) / kTile, key_pad = kTile * key_tiles;
  float* g = smem + kGateAt;
  float* ps = smem + 2 * kScoreBuf;  // P [kRows][kPS]
  float* den = ps + kRows * kPS;
  ScanFreshGates(p, begin, len, head, g, false);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, gq = lane / 4, t4 = lane % 4;

  // S = Q̂ Kᵀ for the tile's tokens against keys [0, key_pad).
  const int slices = (p.dqk + kTile - 1) / kTile;
  const auto q_buf = [&](int s) { return smem + (s & 1) * kScoreBuf; };
  const auto k_buf = [&](int s) { return smem + (s & 1) * kScoreBuf + kRows * kQS; };
  const auto stage_qk = [&](int s) {
    const int c = s * kTile;
    StageBlock(q_buf(s), kQS, p.q + int64_t(begin + r0) * p.proj_stride + int64_t(head) * p.dqk + c, p.proj_stride,
               kRows, kTile, rows, p.dqk - c);
    StageBlock(k_buf(s), kQS, p.k + int64_t(begin) * p.proj_stride + int64_t(head) * p.dqk + c, p.proj_stride,
               key_pad, kTile, keys, p.dqk - c);
    CommitStaged();
  };
  float acc[2][2][4] = {};
  const bool has_keys = 16 * warp < key_pad;
  PipelineSlices(slices, stage_qk, [&](int s) {
    if (has_keys) {
      WarpTileSlice32<kP, 2, 2, kQS, kQS, false, true>(acc, q_buf(s) + gq * kQS + t4,
                                                       k_buf(s) + (16 * warp + gq) * kQS + t4);
    }
  });
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  if (has_keys) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int tl = FragRow(mt, e), t = r0 + tl;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          const int s = 16 * warp + FragCol(nt, e);
          ps[tl * kPS + s] =
              s <= t && t < len ? acc[mt][nt][e] * scale * expf(g[t] + g[kChunk + s] - g[2 * kChunk + t]) : 0.0f;
        }
      }
    }
  }
  __syncthreads();
  // Denominators: eight threads per token, 16 keys each.
  {
    const int tl = tid / 8, part = tid % 8;
    float sum = 0.0f;
    for (int s = 16 * part; s < min(16 * part + 16, key_pad); ++s) sum += ps[tl * kPS + s];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    sum += __shfl_xor_sync(0xffffffffu, sum, 4);
    if (part == 0 && tl < rows) den[tl] = fmaxf(fabsf(sum), expf(-g[2 * kChunk + r0 + tl])) + p.eps;
  }

  // H = P V over the keys, 32 at a time.
  const auto v_buf = [&](int s) { return smem + (s & 1) * kTile * kVS; };
  const auto stage_v = [&](int s) {
    const int k0 = s * kTile;
    StageBlock(v_buf(s), kVS, p.v + int64_t(begin + k0) * p.proj_stride + int64_t(head) * p.dv + j0, p.proj_stride,
               kTile, kCols, keys - k0, width);
    CommitStaged();
  };
  float out[2][2][4] = {};
  const bool has_cols = 16 * warp < width;
  PipelineSlices(key_tiles, stage_v, [&](int s) {
    if (has_cols) {
      WarpTileSlice32<kP, 2, 2, kPS, kVS, false>(out, ps + gq * kPS + kTile * s + t4, v_buf(s) + t4 * kVS + 16 * warp + gq);
    }
  });
  if (!has_cols) return;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int tl = FragRow(mt, e);
      if (tl >= rows) continue;
      float* h = p.h + int64_t(begin + r0 + tl) * p.heads * p.dv + int64_t(head) * p.dv + j0;
      const float d = den[tl];
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const int jl = 16 * warp + FragCol(nt, e);
        if (jl < width) h[jl] = out[mt][nt][e] / d;
      }
    }
  }
}

// kW columns of C: 8 warps of 32 rows x kW / 2 columns.
template <typename T, Products kP, int kW>
__device__ __forceinline__ void UpdateTile(const MlstmParams& p, int seq, int begin, int len, int head, int it,
                                           int jt, float* smem) {
  constexpr int kNT = kW / 16, kVStride = kUVS<kW>;  // n8 tiles a warp
  const int i0 = it * kUpRows, j0 = jt * kW;
  const int rows = min(kUpRows, p.dqk - i0), width = min(kW, p.dv - j0);
  float* g = smem + kGateAt;
  const float* e_tok = g + 2 * kChunk;
  const float m_next = ScanFreshGates(p, begin, len, head, g, true);
  float* k_s = smem;                   // [kHalf][kKS]
  float* v_s = k_s + kHalf * kKS;      // [kHalf][kVStride], then e ⊙ v
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, gq = lane / 4, t4 = lane % 4;
  const int r0 = 32 * (warp / 2), c0 = (kW / 2) * (warp % 2);
  const bool advance_n = jt == 0 && tid < rows;
  float acc[2][kNT][4] = {}, n_acc = 0.0f;
  for (int h0 = 0; h0 < len; h0 += kHalf) {
    const int hl = min(kHalf, len - h0), pad = kTile * ((hl + kTile - 1) / kTile);
    __syncthreads();  // the gates are in place; the previous half is read
    StageBlock(k_s, kKS, p.k + int64_t(begin + h0) * p.proj_stride + int64_t(head) * p.dqk + i0, p.proj_stride, pad,
               kUpRows, hl, rows);
    StageBlock(v_s, kVStride, p.v + int64_t(begin + h0) * p.proj_stride + int64_t(head) * p.dv + j0, p.proj_stride, pad,
               kW, hl, width);
    CommitStaged();
    WaitStaged();
    __syncthreads();
    for (int piece = tid; piece < pad * (kW / 4); piece += kFreshThreads) {
      const int t = piece / (kW / 4);
      float4* v4 = reinterpret_cast<float4*>(v_s + t * kVStride + 4 * (piece % (kW / 4)));
      const float ev = h0 + t < len ? e_tok[h0 + t] : 0.0f;
      const float4 v = *v4;
      *v4 = make_float4(ev * v.x, ev * v.y, ev * v.z, ev * v.w);
    }
    if (advance_n) {
      for (int t = 0; t < hl; ++t) n_acc += e_tok[h0 + t] * k_s[t * kKS + tid];
    }
    __syncthreads();
    for (int s = 0; s < pad / kTile; ++s) {
      WarpTileSlice32<kP, 2, kNT, kKS, kVStride, true>(acc, k_s + (kTile * s + t4) * kKS + r0 + gq,
                                                  v_s + (kTile * s + t4) * kVStride + c0 + gq);
    }
  }
  const HeadState<T> st = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int il = r0 + FragRow(mt, e), jl = c0 + FragCol(nt, e);
        if (il < rows && jl < width) st.c[int64_t(i0 + il) * p.dv + j0 + jl] = FromFloat<T>(acc[mt][nt][e]);
      }
    }
  }
  if (advance_n) st.n[i0 + tid] = FromFloat<T>(n_acc);
  if (it == 0 && jt == 0 && tid == 0) *st.m = m_next;
}

}  // namespace fresh_chunk

// Blocks of a launch over p's sequences, each at most kChunk tokens (max_tokens the longest),
// with update tiles of up_width columns (fresh_chunk::kUpCols or kWideUpCols).
inline int FreshChunkBlocks(const MlstmParams& p, int max_tokens, int up_width = fresh_chunk::kUpCols) {
  const fresh_chunk::Tiles tiles((max_tokens + kTile - 1) / kTile, p.dqk, p.dv, up_width);
  return p.num_seqs * p.heads * tiles.PerHead();
}
constexpr size_t FreshChunkSmemBytes() { return fresh_chunk::kSmemFloats * sizeof(float); }

// Block `block` (< FreshChunkBlocks) of the launch, kFreshThreads threads, with `smem` its
// FreshChunkSmemBytes() of dynamic shared memory. Returns at a block-uniform point only.
template <typename T, Products kP, int kUpWidth = fresh_chunk::kUpCols>
__device__ __forceinline__ void FreshChunkBlock(const MlstmParams& p, int max_tokens, int block, float* smem) {
  using namespace fresh_chunk;
  const Tiles tiles((max_tokens + kTile - 1) / kTile, p.dqk, p.dv, kUpWidth);
  const int per_seq = p.heads * tiles.PerHead();
  const int seq = block / per_seq, in_seq = block % per_seq;
  const int head = in_seq / tiles.PerHead(), tile = in_seq % tiles.PerHead();
  const int begin = p.seq_row_begin[seq], len = SeqRowEnd(p, seq) - begin;
  if (len <= 0) return;
  if (tile < tiles.outs) {
    OutputTile<kP>(p, begin, len, head, tile / tiles.out_cols, tile % tiles.out_cols, smem);
  } else {
    const int u = tile - tiles.outs;
    UpdateTile<T, kP, kUpWidth>(p, seq, begin, len, head, u / tiles.up_cols, u % tiles.up_cols, smem);
  }
}

}  // namespace xlserve::kernels
