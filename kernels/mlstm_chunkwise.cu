// MlstmChunkwise: the mLSTM recurrence over a prefill (many tokens per sequence) in its chunkwise
// form: chunks of kChunk = 128 tokens, each applied as matrix products on the tensor cores, and
// every token's output computed in parallel from the state its chunk starts with.
//
// Maths (DESIGN §3). Per sequence and head, chunk c starts from the state (C, n, m) left by the
// previous one. With the chunk's log gates (soft-capped ĩ_t, lf_t = logsigmoid(f̃_t)) and
// b_t = Σ_{u ≤ t} lf_u (inclusive, within the chunk):
//   m_t = b_t + max(m, max_{s ≤ t} (ĩ_s - b_s))          (the recurrent stabiliser, unrolled)
//   a_t = exp(b_t + m - m_t),   P_ts = (q̂_t · k_s) exp(b_t - b_s + ĩ_s - m_t) for s ≤ t, else 0
//   h_t = (a_t q̂_tᵀ C + Σ_s P_ts v_s) / (max(|a_t q̂_t · n + Σ_s P_ts|, exp(-m_t)) + eps)
// with q̂ = q / sqrt(dqk), and the state after the chunk's last token L:
//   C' = g C + Σ_s e_s k_s v_sᵀ,  n' = g n + Σ_s e_s k_s,  m' = m_L,
//   g = exp(b_L + m - m_L),  e_s = exp(b_L - b_s + ĩ_s - m_L).
// This equals the recurrent form (mlstm_recurrent.cu) up to rounding.
//
// Kernels, in stream order (each waits for the previous one; dependent launches):
//   MlstmChunkGates, MlstmChunkScores (mlstm_chunk_prep.cu): the gate records and P of every
//     chunk at once (they do not depend on C or n; one kernel when every sequence is one chunk);
//   MlstmChunkOutputKernel for chunk 0 (it reads the state, which the last update overwrites;
//     not when every sequence starts from a zero state, which it does not read);
//   MlstmChunkUpdateKernel, one launch walking each sequence's chunks in order: the state after
//     each chunk, into the carry of the next chunk (or, at a sequence's last, the state);
//   MlstmChunkOutputKernel for all later chunks in one launch, each from its carry: the
//     chunks' outputs do not wait for each other, and fill the GPU where one chunk's cannot.
//   MlstmChunkOutputKernel: grid (num_seqs, heads, ceil(dv / 64) x chunks): the h of all of a
//     chunk's tokens for 64 columns, 8 warps of 32 tokens x 32 columns (2 x 4 mma tiles, 3xTF32, or
//     bf16 pairs with p.bf16_products; chunk_mma.cuh). Operands stream through shared memory in
//     slices of 32 along the sum, each staged while the previous slice is multiplied (A by
//     cp.async, B through registers): q [128][32], weighted by a_t / sqrt(dqk), with C [32][64]
//     and n over dqk (a_t Q̂ C and a_t q̂·n), then P [128][32] with v [32][64] over the keys
//     (P V and Σ_s P_ts), into one accumulator. Fp32 slices, strides 36 and 72 (conflict-free
//     fragments); 57 KB.
//   MlstmChunkUpdateKernel: grid (num_seqs, heads x ceil(dqk / 128), ceil(dv / 32)): C' for 128
//     rows x 32 columns, chunk after chunk, Kᵀ (e ⊙ V) over each chunk's tokens (k [128][128]
//     and e ⊙ v [128][32], all staged at once by cp.async; 89 KB), 8 warps of 32 rows x 16
//     columns, the tile of C in registers between chunks; blocks of the first column tile
//     advance n for their rows, and one thread writes m after the sequence's last chunk.
// Between chunks C and n live in fp32 (p.chunk_carry, one per chunk boundary), so a bf16 state
// is rounded once per pass, as by the recurrent kernel; chunk 0 reads the state and the last
// chunk writes it. A
// sequence whose slot still holds a reset's zero state (p.seq_fresh: a new prompt) reads no C or
// n at chunk 0: Q̂ C, q̂·n and g C are zero, so the output blocks run only the key slices.
// Shapes/layout as for MlstmRecurrent (launchers.h): q, k, v, gates column slices of [rows,
// proj_stride] fp32; h [rows, heads*dv]; state pool fp32 or bf16. Fp32 accumulation; no atomics.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_chunkwise.cuh"
#include "kernels/chunk_mma.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kSlice = 32;            // k of one staged operand slice (dqk rows, or keys)
constexpr int kCols = 32;             // columns of C per update block
constexpr int kOutCols = 64;          // columns of h per output block
constexpr int kAStride = kSlice + 4;  // [row][k] operand rows: ≡ 4 (mod 32), conflict-free fragments
constexpr int kBStride = kCols + 8;   // [k][col] operand rows: ≡ 8 (mod 32)
constexpr int kOutBStride = kOutCols + 8;
constexpr int kUpdateRows = 128;      // rows of C per update block
constexpr int kKStride = kUpdateRows + 8;
constexpr int kSliceLoads = kChunk * kSlice / 4 / kChunkThreads;  // float4 pieces per thread of a 128 x 32 slice
constexpr int kOutBLoads = kSlice * kOutCols / 4 / kChunkThreads;  // float4 pieces per thread of a B slice
static_assert(kUpdateRows == kChunk && kOutBLoads * 4 * kChunkThreads == kSlice * kOutCols, "");
static_assert(kChunk == 128 && kChunkThreads == 256, "the warp layouts below: four 32-row groups x two column halves");

// Output blocks: A slices [kChunk][kAStride] and B slices [kSlice][kOutBStride], double-buffered, then n's
// slices [2][kSlice], the denominator and q's weight per token.
constexpr size_t kOutputSmemFloats = 2 * (kChunk * kAStride + kSlice * kOutBStride) + 2 * kSlice + 2 * kChunk;
// Update blocks: the whole chunk's k [kChunk][kKStride] and e ⊙ v [kChunk][kBStride], and e.
constexpr size_t kUpdateSmemFloats = kChunk * (kKStride + kBStride + 1);

__device__ __forceinline__ void Store4(float* dst, float4 v) { *reinterpret_cast<float4*>(dst) = v; }
// Where chunk c of a sequence reads C and n from, and where it writes them: the state at the
// sequence's first chunk and last chunk, fp32 carries ([dqk, dv] C, then n [dqk]) in between,
// one per chunk boundary, so that the outputs of later chunks can read theirs after the
// updates have moved on.
template <typename T>
struct ChunkState {
  HeadState<T> state;
  const float* in;  // the carry entering the chunk (not at the first)
  float* out;       // the carry leaving it (not at the last)
  bool first, last;
  int dqk, dv;
  __device__ float C(int i, int j) const {
    return first ? ToFloat(state.c[int64_t(i) * dv + j]) : in[int64_t(i) * dv + j];
  }
  __device__ float N(int i) const { return first ? ToFloat(state.n[i]) : in[int64_t(dqk) * dv + i]; }
  __device__ void SetC(int i, int j, float v) const {
    if (last) {
      state.c[int64_t(i) * dv + j] = FromFloat<T>(v);
    } else {
      out[int64_t(i) * dv + j] = v;
    }
  }
  __device__ void SetN(int i, float v) const {
    if (last) {
      state.n[i] = FromFloat<T>(v);
    } else {
      out[int64_t(dqk) * dv + i] = v;
    }
  }
};

// Whether chunk `chunk` of sequence `seq` starts from the zero state a reset leaves.
__device__ __forceinline__ bool StartsFromZero(const MlstmParams& p, int seq, int chunk) {
  return chunk == 0 && p.seq_fresh != nullptr && p.seq_fresh[seq] != 0;
}

template <typename T>
__device__ ChunkState<T> ChunkStateOf(const MlstmParams& p, int seq, int head, int begin, int end, int cs) {
  // The carry entering the chunk that starts at row `at` (ChunkCarrySlots).
  const auto carry = [&](int at) {
    return p.chunk_carry + (int64_t(at / kChunk - 1) * p.heads + head) * p.dqk * (p.dv + 1);
  };
  ChunkState<T> s;
  s.state = HeadStateOf<T>(p.state, p.seq_slot[seq], head, p.dqk, p.dv);
  s.first = cs == begin;
  s.last = cs + kChunk >= end;
  s.in = s.first ? nullptr : carry(cs);
  s.out = s.last ? nullptr : carry(cs + kChunk);
  s.dqk = p.dqk;
  s.dv = p.dv;
  return s;
}

// Outputs of chunk first_chunk + blockIdx.z / (column tiles) for the kOutCols columns of column
// tile blockIdx.z % (column tiles) of one head, all the chunk's tokens. Warp w: tokens 32 (w / 2)
// .. + 31, columns 32 (w % 2) .. + 31, as 2 x 4 mma tiles. Slices, each staged one ahead (A by
// cp.async, B in registers) while the previous one is multiplied: first the dqk rows of Q̂ C, 32 at a time (q
// [tokens][32], C [32][cols], n), then the chunk's keys of P V, 32 at a time (P [tokens][32], v
// [32][cols]); a warp skips key slices past its tokens (P is zero there). The q rows are stored
// already scaled by a_t / sqrt(dqk), so that one accumulator takes both sums and q̂·n comes out
// weighted as the denominator wants it.
// Why 64 columns: the A slices (q, P: 16 KB each) are the same for every column tile, and with
// 32 columns a block read them for 4 KB of B. Nsight Compute, H100, the 7B shape's 512-token
// prompt: 44.9 µs over 512 blocks at 32 columns, 40.2 over 256 at 64; the chunkwise stage of
// TTFT(2048) 14.97 / 15.43 -> 13.82 / 13.79 ms (same call).
template <typename T, Products kP>
__global__ void __launch_bounds__(kChunkThreads, 2) MlstmChunkOutputKernel(MlstmParams p, int first_chunk) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int col_tiles = (p.dv + kOutCols - 1) / kOutCols;
  const int seq = blockIdx.x, head = blockIdx.y, chunk = first_chunk + blockIdx.z / col_tiles;
  const int j0 = blockIdx.z % col_tiles * kOutCols;
  const int begin = p.seq_row_begin[seq], end = SeqRowEnd(p, seq);
  const int cs = begin + chunk * kChunk;
  if (cs >= end) return;
  const int len = min(kChunk, end - cs), width = min(kOutCols, p.dv - j0);
  const int inter_slices = (p.dqk + kSlice - 1) / kSlice, slices = inter_slices + (len + kSlice - 1) / kSlice;
  // From a reset's zero state, Q̂ C and q̂·n are zero: only the key slices run.
  const int first_slice = StartsFromZero(p, seq, chunk) ? inter_slices : 0;
  // Buffer s & 1 of each: A slices [2][kChunk][kAStride], B slices [2][kSlice][kOutBStride], n [2][kSlice].
  const auto a_buf = [&](int s) { return smem + (s & 1) * kChunk * kAStride; };
  const auto b_buf = [&](int s) { return smem + 2 * kChunk * kAStride + (s & 1) * kSlice * kOutBStride; };
  float* n_buf = smem + 2 * (kChunk * kAStride + kSlice * kOutBStride);
  float* den = n_buf + 2 * kSlice;  // [kChunk]
  const ChunkState<T> st = ChunkStateOf<T>(p, seq, head, begin, end, cs);
  const int tid = threadIdx.x;
  const float scale = rsqrtf(static_cast<float>(p.dqk));
  // The weight a_t / sqrt(dqk) of each token's q row.
  float* q_weight = den + kChunk;  // [kChunk]
  if (first_slice == 0 && tid < kChunk) {
    q_weight[tid] = tid < len ? GateRecord(p, cs + tid, head)[kGateA] * scale : 0.0f;
  }
  __syncthreads();

  // Slice s: A by cp.async into its buffer (q [tokens][32] or P [tokens][32]), B (C or v
  // [32][cols]; C may be the bf16 state) and n into registers, stored once A has landed.
  float4 b_reg[kOutBLoads];
  float n_reg = 0.0f;
  const auto load = [&](int s) {
    if (s < inter_slices) {
      const int i0 = s * kSlice;
      StageBlock(a_buf(s), kAStride, p.q + int64_t(cs) * p.proj_stride + int64_t(head) * p.dqk + i0, p.proj_stride,
                 kChunk, kSlice, len, p.dqk - i0);
      CommitStaged();
#pragma unroll
      for (int e = 0; e < kOutBLoads; ++e) {
        const int piece = tid + kChunkThreads * e, i = i0 + piece / (kOutCols / 4), c = 4 * (piece % (kOutCols / 4));
        b_reg[e] = i < p.dqk ? (st.first ? Load4(st.state.c + int64_t(i) * p.dv + j0 + c, width - c)
                                         : Load4(st.in + int64_t(i) * p.dv + j0 + c, width - c))
                             : make_float4(0, 0, 0, 0);
      }
      if (tid < kSlice) n_reg = i0 + tid < p.dqk ? st.N(i0 + tid) : 0.0f;
    } else {
      const int k0 = (s - inter_slices) * kSlice;
      StageBlock(a_buf(s), kAStride, p.chunk_p + (int64_t(cs) * p.heads + head) * kChunk + k0,
                 int64_t(p.heads) * kChunk, kChunk, kSlice, len, len - k0);
      CommitStaged();
#pragma unroll
      for (int e = 0; e < kOutBLoads; ++e) {
        const int piece = tid + kChunkThreads * e, key = k0 + piece / (kOutCols / 4), c = 4 * (piece % (kOutCols / 4));
        b_reg[e] = key < len ? Load4(p.v + int64_t(cs + key) * p.proj_stride + int64_t(head) * p.dv + j0 + c, width - c)
                             : make_float4(0, 0, 0, 0);
      }
    }
  };
  // After load(s): this thread's A pieces (StageBlock's pieces tid + kChunkThreads e) have
  // landed; q's are weighted in place.
  const auto store = [&](int s) {
    WaitStaged();
    if (s < inter_slices) {
#pragma unroll
      for (int e = 0; e < kSliceLoads; ++e) {
        const int piece = tid + kChunkThreads * e;
        float4* a4 = reinterpret_cast<float4*>(a_buf(s) + piece / (kSlice / 4) * kAStride + 4 * (piece % (kSlice / 4)));
        const float4 v = *a4;
        const float w = q_weight[piece / (kSlice / 4)];
        *a4 = make_float4(v.x * w, v.y * w, v.z * w, v.w * w);
      }
    }
#pragma unroll
    for (int e = 0; e < kOutBLoads; ++e) {
      const int piece = tid + kChunkThreads * e;
      Store4(b_buf(s) + piece / (kOutCols / 4) * kOutBStride + 4 * (piece % (kOutCols / 4)), b_reg[e]);
    }
    if (tid < kSlice) n_buf[(s & 1) * kSlice + tid] = n_reg;
  };

  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int tg = warp / 2, c0 = 32 * (warp % 2);
  // Per-token sums beside the products: thread tid takes token tid / 2, half tid % 2 of a slice.
  const int sum_t = tid / 2, sum_k = (kSlice / 2) * (tid % 2);
  float acc[2][4][4] = {}, qn_part = 0.0f, p_part = 0.0f;
  load(first_slice);
  store(first_slice);
  for (int s = first_slice; s < slices; ++s) {
    __syncthreads();  // slice s is in buffer s & 1; everyone is done with slice s - 1
    if (s + 1 < slices) load(s + 1);
    const float* a = a_buf(s);
    const float* b = b_buf(s);
    const float* a_lane = a + (32 * tg + g) * kAStride + t4;
    const float* b_lane = b + t4 * kOutBStride + c0 + g;
    if (s < inter_slices) {
      if (32 * tg < len) WarpTileSlice32<kP, 2, 4, kAStride, kOutBStride, false>(acc, a_lane, b_lane);
      const float* nn = n_buf + (s & 1) * kSlice;
#pragma unroll
      for (int k = 0; k < kSlice / 2; ++k) qn_part += a[sum_t * kAStride + sum_k + k] * nn[sum_k + k];
    } else {
      const int ks = s - inter_slices;
      if (ks <= tg && 32 * tg < len) {
        WarpTileSlice32<kP, 2, 4, kAStride, kOutBStride, false>(acc, a_lane, b_lane);
      }
      if (ks <= sum_t / kSlice) {  // key tiles past a token's own were never written
#pragma unroll
        for (int k = 0; k < kSlice / 2; ++k) p_part += a[sum_t * kAStride + sum_k + k];
      }
    }
    if (s + 1 < slices) store(s + 1);
  }
  qn_part += __shfl_xor_sync(0xffffffffu, qn_part, 1);
  p_part += __shfl_xor_sync(0xffffffffu, p_part, 1);
  if (tid % 2 == 0 && sum_t < len) {
    den[sum_t] = fmaxf(fabsf(qn_part + p_part), expf(-GateRecord(p, cs + sum_t, head)[kGateM])) + p.eps;
  }
  __syncthreads();
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = 32 * tg + FragRow(mt, e);
      if (t >= len) continue;
      const float d = den[t];
      float* h = p.h + int64_t(cs + t) * p.heads * p.dv + int64_t(head) * p.dv + j0;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int jl = c0 + FragCol(nt, e);
        if (jl < width) h[jl] = acc[mt][nt][e] / d;
      }
    }
  }
}

// C' = g C + Kᵀ diag(e) V for kUpdateRows rows x kCols columns of one head's C, chunk after
// chunk of the sequence in one launch: the block keeps its tile of C (and its rows of n) in
// registers from one chunk to the next and writes each chunk's carry for the output kernel.
// Why one launch: with a launch per chunk (the recurrence across chunks is serial) each chunk
// paid a launch's fill and drain and read back the carry just written; here the next chunk's
// operands load while the block writes the current chunk's carry. H200, 7B shape, 2,048-token
// prompt: the chunkwise stage 16.3 -> 14.6 ms with bf16 products, 24.6 -> 23.1 ms in 3xTF32.
// The values are those of a launch per chunk: the carry between chunks is fp32, as are the
// registers, and the operations and their order are unchanged.
// Each chunk's operands are staged at once (k [tokens][rows], v [tokens][cols], e), by
// cp.async, then scaled to e ⊙ v in place: one round trip to memory where staging a slice
// ahead in registers made four (Nsight Compute, 128-token chunk of the 7B shape at 1.36 GHz:
// 20.1 µs before, 17.0 µs now; the products themselves are a few µs). The output kernel keeps
// its slices: staged at once from a zero state it measured slower, 12.8 against 12.0 µs, its
// loads no longer overlapping its products. Warp w: rows 32 (w / 2) .. + 31, columns 16 (w % 2)
// .. + 15, as 2 x 2 mma tiles (A = Kᵀ read from k's [token][row] layout), over the tokens 32 at
// a time in order. Blocks of the first column tile also advance n for their rows; after the
// sequence's last chunk one thread writes m.
template <typename T, Products kP>
__global__ void __launch_bounds__(kChunkThreads, 2) MlstmChunkUpdateKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int row_tiles = (p.dqk + kUpdateRows - 1) / kUpdateRows;
  const int seq = blockIdx.x, head = blockIdx.y / row_tiles, i0 = blockIdx.y % row_tiles * kUpdateRows;
  const int j0 = blockIdx.z * kCols;
  const int begin = p.seq_row_begin[seq], end = SeqRowEnd(p, seq);
  if (begin >= end) return;
  const int rows = min(kUpdateRows, p.dqk - i0), width = min(kCols, p.dv - j0);
  float* k_s = smem;                                 // [kChunk][kKStride]
  float* v_s = k_s + kChunk * kKStride;              // [kChunk][kBStride], then e ⊙ v
  float* e_s = v_s + kChunk * kBStride;              // [kChunk]
  const int tid = threadIdx.x;
  // Tokens past the chunk's end (up to the slice boundary) stage as zeros.
  const auto stage = [&](int cs) {
    const int len = min(kChunk, end - cs), padded = kSlice * ((len + kSlice - 1) / kSlice);
    StageBlock(k_s, kKStride, p.k + int64_t(cs) * p.proj_stride + int64_t(head) * p.dqk + i0, p.proj_stride, padded,
               kUpdateRows, len, rows);
    StageBlock(v_s, kBStride, p.v + int64_t(cs) * p.proj_stride + int64_t(head) * p.dv + j0, p.proj_stride, padded,
               kCols, len, width);
    CommitStaged();
    if (tid < padded) e_s[tid] = tid < len ? GateRecord(p, cs + tid, head)[kGateE] : 0.0f;
  };
  stage(begin);

  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int r0 = 32 * (warp / 2), c0 = 16 * (warp % 2);
  const bool advance_n = blockIdx.z == 0 && tid < rows;
  // The C this block advances, read now so that the loads fly with the staging.
  const ChunkState<T> st0 = ChunkStateOf<T>(p, seq, head, begin, end, begin);
  const bool from_zero = StartsFromZero(p, seq, 0);
  float c_old[2][2][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int il = r0 + FragRow(mt, e), jl = c0 + FragCol(nt, e);
        c_old[mt][nt][e] = il < rows && jl < width && !from_zero ? st0.C(i0 + il, j0 + jl) : 0.0f;
      }
    }
  }
  float n_old = advance_n && !from_zero ? st0.N(i0 + tid) : 0.0f;

  for (int cs = begin; cs < end; cs += kChunk) {
    const int len = min(kChunk, end - cs), slices = (len + kSlice - 1) / kSlice, padded = kSlice * slices;
    WaitStaged();
    __syncthreads();
    for (int piece = tid; piece < padded * (kCols / 4); piece += kChunkThreads) {
      const int t = piece / (kCols / 4);
      float4* v4 = reinterpret_cast<float4*>(v_s + t * kBStride + 4 * (piece % (kCols / 4)));
      const float ev = e_s[t];
      const float4 v = *v4;
      *v4 = make_float4(ev * v.x, ev * v.y, ev * v.z, ev * v.w);
    }
    float n_update = 0.0f;
    if (advance_n) {
      for (int t = 0; t < padded; ++t) n_update += e_s[t] * k_s[t * kKStride + tid];
    }
    __syncthreads();
    float acc[2][2][4] = {};
    for (int s = 0; s < slices; ++s) {
      WarpTileSlice32<kP, 2, 2, kKStride, kBStride, true>(acc, k_s + (kSlice * s + t4) * kKStride + r0 + g,
                                                          v_s + (kSlice * s + t4) * kBStride + c0 + g);
    }
    // Every warp is done with this chunk's operands: the next chunk's load while this one's
    // carry is written.
    __syncthreads();
    if (cs + kChunk < end) stage(cs + kChunk);
    const ChunkState<T> st = ChunkStateOf<T>(p, seq, head, begin, end, cs);
    const float decay = GateRecord(p, cs, head)[kGateDecay];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int il = r0 + FragRow(mt, e), jl = c0 + FragCol(nt, e);
          c_old[mt][nt][e] = decay * c_old[mt][nt][e] + acc[mt][nt][e];
          if (il < rows && jl < width) st.SetC(i0 + il, j0 + jl, c_old[mt][nt][e]);
        }
      }
    }
    if (advance_n) {
      n_old = decay * n_old + n_update;
      st.SetN(i0 + tid, n_old);
    }
  }
  if (blockIdx.z == 0 && i0 == 0 && tid == 0) *st0.state.m = GateRecord(p, end - 1, head)[kGateM];
}

template <typename T, Products kP>
cudaError_t LaunchChunks(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  const size_t out_smem = kOutputSmemFloats * sizeof(float), up_smem = kUpdateSmemFloats * sizeof(float);
  cudaError_t e = AllowDynamicSmem<MlstmChunkOutputKernel<T, kP>>(out_smem);
  if (e == cudaSuccess) e = AllowDynamicSmem<MlstmChunkUpdateKernel<T, kP>>(up_smem);
  if (e != cudaSuccess) return e;
  const int col_tiles = (p.dv + kCols - 1) / kCols, row_tiles = (p.dqk + kUpdateRows - 1) / kUpdateRows;
  const int out_tiles = (p.dv + kOutCols - 1) / kOutCols;
  const int chunks = (max_tokens + kChunk - 1) / kChunk;
  // Chunk 0's outputs first where they read a state, which the last chunk's update overwrites;
  // from zero states they read nothing and join the others.
  const int first_late = p.all_fresh ? 0 : 1;
  if (first_late == 1) {
    e = LaunchDependent(MlstmChunkOutputKernel<T, kP>, dim3(p.num_seqs, p.heads, out_tiles), kChunkThreads, out_smem,
                        stream, p, 0);
  }
  if (e == cudaSuccess) {
    e = LaunchDependent(MlstmChunkUpdateKernel<T, kP>, dim3(p.num_seqs, p.heads * row_tiles, col_tiles), kChunkThreads,
                        up_smem, stream, p);
  }
  // Then the outputs of every later chunk in one launch, each from its own carry.
  if (e == cudaSuccess && chunks > first_late) {
    e = LaunchDependent(MlstmChunkOutputKernel<T, kP>, dim3(p.num_seqs, p.heads, out_tiles * (chunks - first_late)),
                        kChunkThreads, out_smem, stream, p, first_late);
  }
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

}  // namespace

bool MlstmChunkwiseSupports(int dqk) {
  return dqk % 4 == 0;
}

cudaError_t MlstmChunkwise(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmChunkwiseSupports(p.dqk) || p.h == nullptr || p.seq_defer != nullptr || p.chunk_p == nullptr ||
      p.chunk_gates == nullptr || p.chunk_carry == nullptr) {
    return cudaErrorInvalidValue;
  }
  const cudaError_t e = LaunchChunkPrep(p, max_tokens, stream);
  if (e != cudaSuccess) return e;
  return LaunchByStateAndProducts(p, [&](auto state, auto products) {
    return LaunchChunks<decltype(state), decltype(products)::value>(p, max_tokens, stream);
  });
}

}  // namespace xlserve::kernels
