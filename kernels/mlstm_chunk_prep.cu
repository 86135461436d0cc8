// The state-free half of the chunkwise mLSTM (mlstm_chunkwise.cu has the maths): the gate scan
// of every chunk, then the chunk's weighted scores P, both for all chunks at once, before the
// chunks' outputs and state updates run in order.
//
// MlstmChunkGatesKernel: grid (num_seqs, heads), kGateThreads threads: kGateChunks chunks of a
// sequence and head at once, thread t taking row t % kChunk of chunk t / kChunk. Within a chunk
// b and the running maximum R_t of ĩ - b are warp scans plus the chunk's earlier warps' totals
// (shared memory); neither depends on the stabiliser m, which alone carries from chunk to
// chunk: m' = b_L + max(m, R_L). One thread walks that chain over the round's chunks, then every
// row takes its chunk's m (m_t = b_t + max(m, R_t), a_t, e_t). (Walking the chunks one by one,
// 128 threads a block, the kernel took 9.7 µs of a 512-token prompt's 112 in the stage, Nsight
// Compute on the H100, 7B shape: a 2,048-token prompt's 16 chunks about 40 µs a layer.) Writes
// the gate records of mlstm_chunkwise.cuh; reads only m of the state.
//
// MlstmChunkScoresKernel: grid (num_seqs, heads, 32-row tiles of the longest sequence x
// kTilesPerChunk key tiles): a row tile against one 32-key tile of its chunk up to its own, over
// dqk in slices of 64 (q and k [32][64] in shared memory, loaded into registers one slice ahead).
// Four warps: rows 16 (w % 2) .. + 15 against the 32 keys (four mma tiles, 3xTF32 or bf16
// pairs by p.bf16_products, chunk_mma.cuh) over the dqk half w / 2 of each slice; the halves'
// sums meet in shared memory and are weighted by the gates:
//   P_ts = (q_t · k_s) / sqrt(dqk) · exp(b_t + (ĩ_s - b_s) - m_t)   for s <= t, else 0.
// The exponent is <= 0 there (m_t bounds it), so P is finite whatever the gates.
//
// When every sequence fits in one chunk (max_tokens <= kChunk: a new prompt's pass, and every
// prompt chunk of a serving pass) there is no gates kernel: each scores block scans its chunk's
// gates itself, one row per thread, while its first slice loads, and the blocks of the first
// row and key tile write the records. A dependent launch cost more than the scan (Nsight
// Compute, 128-token chunk of the 7B shape at 1.36 GHz: the gates kernel took 5.6 of 50 µs).
#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_chunkwise.cuh"
#include "kernels/chunk_mma.cuh"

namespace xlserve::kernels {
namespace {

constexpr int kGateWarps = kChunk / 32;

// Row `row`'s gate record (mlstm_chunkwise.cuh) from its scan; `first`: the chunk's first row.
__device__ __forceinline__ void WriteGateRecord(const MlstmParams& p, int row, int head, const ChunkScan& sc, float m,
                                                bool first) {
  float* g = GateRecord(p, row, head);
  g[kGateB] = sc.b;
  g[kGateIgMinusB] = sc.ig_minus_b;
  g[kGateM] = sc.m_t;
  g[kGateA] = expf(sc.b + m - sc.m_t);
  g[kGateE] = expf(sc.b_last + sc.ig_minus_b - sc.m_next);
  if (first) g[kGateDecay] = expf(sc.b_last + m - sc.m_next);
}

__device__ __forceinline__ float RawGate(const MlstmParams& p, const float* gate, int row, int end, int head) {
  return row < end ? gate[int64_t(row) * p.proj_stride + head] : 0.0f;
}

constexpr int kGateChunks = 8;  // chunks a gates block scans at once
constexpr int kGateThreads = kGateChunks * kChunk;

__global__ void __launch_bounds__(kGateThreads) MlstmChunkGatesKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  __shared__ float last_b[kGateChunks], last_max[kGateChunks], chunk_m[kGateChunks + 1];
  const int seq = blockIdx.x, head = blockIdx.y, tid = threadIdx.x;
  const int in_chunk = tid % kChunk, group = tid / kChunk;
  const int begin = p.seq_row_begin[seq], end = SeqRowEnd(p, seq);
  if (tid == 0) chunk_m[kGateChunks] = *HeadStabiliser(p.state, p.seq_slot[seq], head);
  for (int round = begin; round < end; round += kGateThreads) {
    const int cs = round + group * kChunk, row = cs + in_chunk;
    const int len = min(kChunk, end - cs);  // <= 0: a chunk past the sequence's end
    const bool live = in_chunk < len;
    const LogGates lg = live ? MlstmLogGates(RawGate(p, p.igate, row, end, head), RawGate(p, p.fgate, row, end, head),
                                             p.gate_cap)
                             : LogGates{-INFINITY, 0.0f};
    const GateScan scan = ScanGates<kGateWarps, kGateChunks>(lg, live, len);
    if (in_chunk == 0) {  // the chunk's last b and R, for the chain below
      last_b[group] = scan.b_last;
      last_max[group] = scan.max_last;
    }
    __syncthreads();
    if (tid == 0) {  // chunk_m[c]: the stabiliser entering chunk c of the round; [kGateChunks] after it
      float m = chunk_m[kGateChunks];
      for (int c = 0; c < kGateChunks && round + c * kChunk < end; ++c) {
        chunk_m[c] = m;
        m = last_b[c] + fmaxf(m, last_max[c]);
      }
      chunk_m[kGateChunks] = m;
    }
    __syncthreads();
    if (live) WriteGateRecord(p, row, head, scan.From(chunk_m[group]), chunk_m[group], in_chunk == 0);
  }
}

constexpr int kScoreThreads = 128;     // 4 warps: two row halves x two halves of each dqk slice
constexpr int kSlice = 64;             // dqk of one staged slice, 32 for each half
constexpr int kStride = kSlice + 4;    // q and k slice rows: fragments conflict-free
constexpr int kPieces = kTile * kSlice / 4 / kScoreThreads;  // 4-value pieces of q (and of k) per thread
constexpr size_t kScoresSmemBytes = (2 * 2 * kTile * kStride + 2 * kTile * 16) * sizeof(float);

template <Products kP, bool kScan>
__global__ void __launch_bounds__(kScoreThreads) MlstmChunkScoresKernel(MlstmParams p) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int seq = blockIdx.x, head = blockIdx.y;
  const int row_tile = blockIdx.z / kTilesPerChunk, kg = blockIdx.z % kTilesPerChunk;
  const int tile = row_tile % kTilesPerChunk;  // within the chunk
  if (kg > tile) return;
  const int begin = p.seq_row_begin[seq], end = SeqRowEnd(p, seq);
  const int t0 = begin + row_tile * kTile, cs = t0 - tile * kTile, s0 = cs + kTile * kg;  // rows, chunk, keys
  if (t0 >= end) return;
  const int len = min(kTile, end - t0), keys = min(kTile, end - s0);
  const int tid = threadIdx.x;
  // Buffer s & 1 of each: q slices [2][kTile][kStride], k slices [2][kTile][kStride]; then the
  // second dqk halves' partial sums [2][32 lanes][16].
  const auto q_buf = [&](int s) { return smem + (s & 1) * kTile * kStride; };
  const auto k_buf = [&](int s) { return smem + (2 + (s & 1)) * kTile * kStride; };
  float* part = smem + 4 * kTile * kStride;
  const int64_t col = int64_t(head) * p.dqk;
  float4 q_reg[kPieces], k_reg[kPieces];
  const auto load = [&](int s) {
#pragma unroll
    for (int e = 0; e < kPieces; ++e) {
      const int piece = tid + kScoreThreads * e, r = piece / (kSlice / 4), c = s * kSlice + 4 * (piece % (kSlice / 4));
      q_reg[e] = r < len ? Load4(p.q + int64_t(t0 + r) * p.proj_stride + col + c, p.dqk - c) : make_float4(0, 0, 0, 0);
      k_reg[e] = r < keys ? Load4(p.k + int64_t(s0 + r) * p.proj_stride + col + c, p.dqk - c) : make_float4(0, 0, 0, 0);
    }
  };
  const auto store = [&](int s) {
#pragma unroll
    for (int e = 0; e < kPieces; ++e) {
      const int piece = tid + kScoreThreads * e, at = piece / (kSlice / 4) * kStride + 4 * (piece % (kSlice / 4));
      *reinterpret_cast<float4*>(q_buf(s) + at) = q_reg[e];
      *reinterpret_cast<float4*>(k_buf(s) + at) = k_reg[e];
    }
  };
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int r0 = 16 * (warp % 2), half = warp / 2;  // rows r0 .. + 15; dqk 32 half .. + 31 of each slice
  const int slices = (p.dqk + kSlice - 1) / kSlice;
  float d[1][4][4] = {};
  load(0);
  // b, ĩ - b and m of the chunk's rows (the scan's, with kScan), read after the slices' barriers.
  __shared__ float scan_b[kChunk], scan_igb[kChunk], scan_m[kChunk];
  if constexpr (kScan) {
    const float m = *HeadStabiliser(p.state, p.seq_slot[seq], head);
    const int chunk_len = end - cs;
    const bool live = tid < chunk_len;
    const LogGates lg = live ? MlstmLogGates(RawGate(p, p.igate, cs + tid, end, head),
                                             RawGate(p, p.fgate, cs + tid, end, head), p.gate_cap)
                             : LogGates{-INFINITY, 0.0f};
    const ChunkScan sc = ScanChunkGates<kScoreThreads / 32>(lg, live, chunk_len, m);
    if (live) {
      scan_b[tid] = sc.b;
      scan_igb[tid] = sc.ig_minus_b;
      scan_m[tid] = sc.m_t;
      if (row_tile == 0 && kg == 0) WriteGateRecord(p, cs + tid, head, sc, m, tid == 0);
    }
  }
  store(0);
  for (int s = 0; s < slices; ++s) {
    __syncthreads();
    if (s + 1 < slices) load(s + 1);
    WarpTileSlice32<kP, 1, 4, kStride, kStride, false, true>(d, q_buf(s) + (r0 + g) * kStride + 32 * half + t4,
                                                        k_buf(s) + g * kStride + 32 * half + t4);
    if (s + 1 < slices) store(s + 1);
  }
  float* mine = part + ((warp % 2) * 32 + lane) * 16;
  if (half == 1) {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) mine[nt * 4 + e] = d[0][nt][e];
    }
  }
  __syncthreads();
  if (half == 1) return;
  const float scale = rsqrtf(static_cast<float>(p.dqk));
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int t = r0 + AccRow(e);
    if (t >= len) continue;
    const int tl = tile * kTile + t;  // place in the chunk
    const float* gt = GateRecord(p, t0 + t, head);
    const float b_t = kScan ? scan_b[tl] : gt[kGateB], m_t = kScan ? scan_m[tl] : gt[kGateM];
    float* out = p.chunk_p + (int64_t(t0 + t) * p.heads + head) * kChunk;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int sl = kTile * kg + 8 * nt + AccCol(e);
      const float igb_s = kScan ? scan_igb[sl] : GateRecord(p, cs + sl, head)[kGateIgMinusB];
      const float dot = d[0][nt][e] + mine[nt * 4 + e];
      out[sl] = sl <= tl ? dot * scale * expf(b_t + igb_s - m_t) : 0.0f;
    }
  }
}

template <Products kP, bool kScan>
cudaError_t LaunchScores(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  const cudaError_t e = AllowDynamicSmem<MlstmChunkScoresKernel<kP, kScan>>(kScoresSmemBytes);
  if (e != cudaSuccess) return e;
  const int tiles = (max_tokens + kTile - 1) / kTile;
  return LaunchDependent(MlstmChunkScoresKernel<kP, kScan>, dim3(p.num_seqs, p.heads, tiles * kTilesPerChunk),
                         kScoreThreads, kScoresSmemBytes, stream, p);
}

template <Products kP>
cudaError_t LaunchPrep(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (max_tokens <= kChunk) return LaunchScores<kP, true>(p, max_tokens, stream);
  const cudaError_t e = LaunchDependent(MlstmChunkGatesKernel, dim3(p.num_seqs, p.heads), kGateThreads, 0, stream, p);
  return e == cudaSuccess ? LaunchScores<kP, false>(p, max_tokens, stream) : e;
}

}  // namespace

cudaError_t LaunchChunkPrep(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  return p.bf16_products ? LaunchPrep<Products::kBf16Pair>(p, max_tokens, stream)
                         : LaunchPrep<Products::k3xTf32>(p, max_tokens, stream);
}

}  // namespace xlserve::kernels
