// What the chunkwise mLSTM kernels share (mlstm_chunk_prep.cu, mlstm_chunkwise.cu): the chunk
// and tile sizes, and the per-(row, head) gate record that the gate scan leaves for the others.
#pragma once

#include "kernels/launchers.h"
#include "kernels/mlstm_common.cuh"

namespace xlserve::kernels {

constexpr int kChunk = kChunkTokens;              // tokens applied to C in one update
constexpr int kTile = 32;                         // tokens (and keys) of one output or score tile
constexpr int kTilesPerChunk = kChunk / kTile;
constexpr int kChunkThreads = 256;                // output and update blocks: 8 warps of 2 x 2 mma tiles
static_assert(kChunk % kTile == 0, "");

// The gate record of row r, head h at p.chunk_gates[(r * heads + h) * kChunkGateFields], with b
// the inclusive sum of log f over the row's chunk up to it, m_c the stabiliser before the chunk
// and L the chunk's last row (DESIGN §3):
enum ChunkGate {
  kGateB,          // b_t
  kGateIgMinusB,   // ĩ_t - b_t
  kGateM,          // m_t = b_t + max(m_c, max_{s <= t} (ĩ_s - b_s)); at L, the stabiliser after it
  kGateA,          // a_t = exp(b_t + m_c - m_t): the weight of the chunk's initial state in h_t
  kGateE,          // e_t = exp(b_L - b_t + ĩ_t - m_L): the weight of k_t v_tᵀ in the next state
  kGateDecay,      // at the chunk's first row only: g = exp(b_L + m_c - m_L), the state's decay
};
static_assert(kGateDecay < kChunkGateFields, "");

__device__ __forceinline__ float* GateRecord(const MlstmParams& p, int row, int head) {
  return p.chunk_gates + (int64_t(row) * p.heads + head) * kChunkGateFields;
}

// The gate scan of every chunk of every sequence: grid (num_seqs, heads), kChunk threads each.
cudaError_t LaunchChunkGates(const MlstmParams& p, cudaStream_t stream);
// P_ts = (q̂_t · k_s) exp(b_t - b_s + ĩ_s - m_t) for s <= t in the same chunk (0 for s > t) into
// p.chunk_p[(t * heads + h) * kChunk + s - chunk start], for every key tile up to t's own.
cudaError_t LaunchChunkScores(const MlstmParams& p, int max_tokens, cudaStream_t stream);

}  // namespace xlserve::kernels
