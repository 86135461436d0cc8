#include "engine/cpu/mlstm_chunkwise.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_ops.h"

namespace xlserve::cpu {
namespace {

float DotStrided(const float* a, const float* b, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One chunk of `len` tokens starting at token `t0`.
void RunChunk(const MlstmHeadInputs& in, int t0, int len, float* c, float* n, float* m, float* h,
              int64_t h_stride, std::vector<float>& scratch) {
  const int dqk = in.dqk;
  const int dv = in.dv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dqk));
  const float m0 = *m;

  // F[t]: cumulative log forget gate inside the chunk; ig[t]: input-gate pre-activation.
  scratch.assign(static_cast<size_t>(3 * len + len * len + dv), 0.0f);
  float* F = scratch.data();
  float* ig = F + len;
  float* mt = ig + len;
  float* logd = mt + len;  // [len, len] lower triangle: F_t - F_s + ĩ_s
  float* qc = logd + len * len;  // q̂_tᵀ C0 for the current t
  float acc = 0;
  for (int t = 0; t < len; ++t) {
    acc += LogSigmoid(in.fgate[(t0 + t) * in.gate_stride]);
    F[t] = acc;
    ig[t] = in.igate[(t0 + t) * in.gate_stride];
  }
  for (int t = 0; t < len; ++t) {
    float mx = F[t] + m0;
    for (int s = 0; s <= t; ++s) {
      logd[t * len + s] = F[t] - F[s] + ig[s];
      mx = std::max(mx, logd[t * len + s]);
    }
    mt[t] = mx;
  }

  // Outputs: the inter-chunk term from the carried state plus the causal intra-chunk sum.
  std::vector<float> qhat(dqk);
  for (int t = 0; t < len; ++t) {
    const float* qt = in.q + (t0 + t) * in.qk_stride;
    for (int i = 0; i < dqk; ++i) qhat[i] = qt[i] * scale;
    const float w0 = std::exp(F[t] + m0 - mt[t]);
    std::fill(qc, qc + dv, 0.0f);
    for (int i = 0; i < dqk; ++i) {
      const float qi = qhat[i];
      const float* crow = c + static_cast<int64_t>(i) * dv;
      for (int j = 0; j < dv; ++j) qc[j] += qi * crow[j];
    }
    float* ht = h + (t0 + t) * h_stride;
    for (int j = 0; j < dv; ++j) ht[j] = w0 * qc[j];
    float den = w0 * DotStrided(qhat.data(), n, dqk);
    for (int s = 0; s <= t; ++s) {
      const float* ks = in.k + (t0 + s) * in.qk_stride;
      const float* vs = in.v + (t0 + s) * in.v_stride;
      const float w = std::exp(logd[t * len + s] - mt[t]) * DotStrided(qhat.data(), ks, dqk);
      den += w;
      for (int j = 0; j < dv; ++j) ht[j] += w * vs[j];
    }
    const float denom = std::max(std::fabs(den), std::exp(-mt[t])) + in.eps;
    for (int j = 0; j < dv; ++j) ht[j] /= denom;
  }

  // State at the end of the chunk: one rank-len update of the carried state.
  const int last = len - 1;
  const float m_new = mt[last];
  const float decay = std::exp(F[last] + m0 - m_new);
  for (int64_t i = 0; i < static_cast<int64_t>(dqk) * dv; ++i) c[i] *= decay;
  for (int i = 0; i < dqk; ++i) n[i] *= decay;
  for (int s = 0; s < len; ++s) {
    const float w = std::exp(logd[last * len + s] - m_new);
    const float* ks = in.k + (t0 + s) * in.qk_stride;
    const float* vs = in.v + (t0 + s) * in.v_stride;
    for (int i = 0; i < dqk; ++i) {
      const float wk = w * ks[i];
      float* crow = c + static_cast<int64_t>(i) * dv;
      for (int j = 0; j < dv; ++j) crow[j] += wk * vs[j];
      n[i] += wk;
    }
  }
  *m = m_new;
}

}  // namespace

void MlstmHeadChunkwise(const MlstmHeadInputs& in, int chunk_size, float* c, float* n, float* m,
                        float* h, int64_t h_stride) {
  std::vector<float> scratch;
  const int chunk = std::max(1, chunk_size);
  for (int t0 = 0; t0 < in.num_tokens; t0 += chunk) {
    RunChunk(in, t0, std::min(chunk, in.num_tokens - t0), c, n, m, h, h_stride, scratch);
  }
}

}  // namespace xlserve::cpu
