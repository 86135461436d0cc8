// The mLSTM cell of one head of one sequence, in chunkwise form (DESIGN §3).
//
// For a chunk of L tokens starting from the carried state (C0 [dqk, dv], n0 [dqk], m0), with
// lf_s = logsigmoid(f̃_s) and F_t = sum_{s<=t} lf_s inside the chunk:
//   m_t   = max(F_t + m0, max_{s<=t}(F_t - F_s + ĩ_s))
//   num_t = e^{F_t+m0-m_t} q̂_tᵀC0 + sum_{s<=t} e^{F_t-F_s+ĩ_s-m_t} (q̂_t·k_s) v_s
//   den_t = e^{F_t+m0-m_t} q̂_t·n0 + sum_{s<=t} e^{F_t-F_s+ĩ_s-m_t} (q̂_t·k_s)
//   h_t   = num_t / (max(|den_t|, e^{-m_t}) + eps),   q̂ = q / sqrt(dqk)
// and the state advances once per chunk to position L. With L = 1 this is exactly the
// recurrent step, so the same code serves decode (L = 1) and prefill (L = chunk size); any
// chunk size gives the same result up to fp32 rounding.
#pragma once

#include <cstdint>

namespace xlserve::cpu {

// Inputs of one head over T tokens. Rows are tokens; `*_stride` are row strides in floats.
struct MlstmHeadInputs {
  const float* q;  // [T, dqk]
  const float* k;  // [T, dqk]
  const float* v;  // [T, dv]
  const float* igate;  // [T] soft-capped input-gate pre-activations (stride igate_stride)
  const float* fgate;  // [T] soft-capped forget-gate pre-activations
  int64_t qk_stride = 0;
  int64_t v_stride = 0;
  int64_t gate_stride = 0;
  int num_tokens = 0;
  int dqk = 0;
  int dv = 0;
  float eps = 1e-6f;
};

// Runs the head over all tokens in chunks of `chunk_size`, reading and updating the state
// in place (c: [dqk, dv], n: [dqk], m: scalar) and writing h: [T, dv] with row stride h_stride.
void MlstmHeadChunkwise(const MlstmHeadInputs& in, int chunk_size, float* c, float* n, float* m,
                        float* h, int64_t h_stride);

}  // namespace xlserve::cpu
