#include "engine/cpu/mlstm_chunkwise.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

namespace xlserve::cpu {
namespace {

struct HeadData {
  int T, dqk, dv;
  std::vector<float> q, k, v, ig, fg;
};

HeadData RandomHead(int T, int dqk, int dv, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> ig_dist(-6.0f, 4.0f), fg_dist(-3.0f, 6.0f);
  HeadData d{T, dqk, dv, {}, {}, {}, {}, {}};
  for (int i = 0; i < T * dqk; ++i) d.q.push_back(normal(rng));
  for (int i = 0; i < T * dqk; ++i) d.k.push_back(normal(rng));
  for (int i = 0; i < T * dv; ++i) d.v.push_back(normal(rng));
  for (int i = 0; i < T; ++i) d.ig.push_back(ig_dist(rng));
  for (int i = 0; i < T; ++i) d.fg.push_back(fg_dist(rng));
  return d;
}

MlstmHeadInputs Inputs(const HeadData& d) {
  MlstmHeadInputs in;
  in.q = d.q.data();
  in.k = d.k.data();
  in.v = d.v.data();
  in.igate = d.ig.data();
  in.fgate = d.fg.data();
  in.qk_stride = d.dqk;
  in.v_stride = d.dv;
  in.gate_stride = 1;
  in.num_tokens = d.T;
  in.dqk = d.dqk;
  in.dv = d.dv;
  return in;
}

// The recurrence of DESIGN §3 written out step by step in double precision: an independent
// statement of the maths that the chunkwise code must agree with.
void NaiveRecurrence(const HeadData& d, std::vector<double>& C, std::vector<double>& n, double& m,
                     std::vector<double>& h) {
  const double eps = 1e-6;
  h.assign(static_cast<size_t>(d.T) * d.dv, 0.0);
  for (int t = 0; t < d.T; ++t) {
    const double f_pre = d.fg[t];
    const double lf = f_pre >= 0 ? -std::log1p(std::exp(-f_pre)) : f_pre - std::log1p(std::exp(f_pre));
    const double m_new = std::max(lf + m, static_cast<double>(d.ig[t]));
    const double f = std::exp(lf + m - m_new);
    const double i = std::exp(d.ig[t] - m_new);
    for (int a = 0; a < d.dqk; ++a) {
      for (int b = 0; b < d.dv; ++b) {
        C[a * d.dv + b] = f * C[a * d.dv + b] + i * d.k[t * d.dqk + a] * d.v[t * d.dv + b];
      }
      n[a] = f * n[a] + i * d.k[t * d.dqk + a];
    }
    m = m_new;
    const double scale = 1.0 / std::sqrt(static_cast<double>(d.dqk));
    double qn = 0;
    for (int a = 0; a < d.dqk; ++a) qn += d.q[t * d.dqk + a] * scale * n[a];
    const double denom = std::max(std::fabs(qn), std::exp(-m)) + eps;
    for (int b = 0; b < d.dv; ++b) {
      double num = 0;
      for (int a = 0; a < d.dqk; ++a) num += d.q[t * d.dqk + a] * scale * C[a * d.dv + b];
      h[t * d.dv + b] = num / denom;
    }
  }
}

struct Result {
  std::vector<float> C, n, h;
  float m = 0;
};

Result RunChunkwise(const HeadData& d, int chunk, int split_at = -1) {
  Result r;
  r.C.assign(static_cast<size_t>(d.dqk) * d.dv, 0.0f);
  r.n.assign(d.dqk, 0.0f);
  r.h.assign(static_cast<size_t>(d.T) * d.dv, 0.0f);
  MlstmHeadInputs in = Inputs(d);
  if (split_at < 0) {
    MlstmHeadChunkwise(in, chunk, r.C.data(), r.n.data(), &r.m, r.h.data(), d.dv);
    return r;
  }
  // Two calls, as prefill-then-decode makes them: the state must carry over exactly.
  in.num_tokens = split_at;
  MlstmHeadChunkwise(in, chunk, r.C.data(), r.n.data(), &r.m, r.h.data(), d.dv);
  in.q += split_at * d.dqk;
  in.k += split_at * d.dqk;
  in.v += split_at * d.dv;
  in.igate += split_at;
  in.fgate += split_at;
  in.num_tokens = d.T - split_at;
  MlstmHeadChunkwise(in, chunk, r.C.data(), r.n.data(), &r.m, r.h.data() + split_at * d.dv, d.dv);
  return r;
}

double MaxRelDiff(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]) / (1.0 + std::fabs(b[i])));
  }
  return worst;
}

TEST_CASE("chunkwise mLSTM matches the step-by-step recurrence for every chunk size") {
  for (auto [T, dqk, dv] : {std::tuple{1, 8, 8}, std::tuple{37, 16, 8}, std::tuple{70, 8, 24}}) {
    const HeadData d = RandomHead(T, dqk, dv, 1234 + T);
    std::vector<double> C(dqk * dv, 0.0), n(dqk, 0.0), h;
    double m = 0;
    NaiveRecurrence(d, C, n, m, h);
    for (int chunk : {1, 2, 5, 16, 64, 128}) {
      INFO("T=" << T << " chunk=" << chunk);
      const Result r = RunChunkwise(d, chunk);
      // fp32 against fp64 over up to 70 steps with exponentials of gates up to ~10: 1e-4
      // relative leaves a wide margin over the ~1e-6 seen, yet catches any wrong weighting.
      CHECK(MaxRelDiff(r.h, h) < 1e-4);
      CHECK(MaxRelDiff(r.C, C) < 1e-4);
      CHECK(MaxRelDiff(r.n, n) < 1e-4);
      CHECK(std::fabs(r.m - m) < 1e-4);
    }
  }
}

TEST_CASE("state carries across calls: prefill then steps equals one pass") {
  const HeadData d = RandomHead(50, 16, 16, 99);
  const Result whole = RunChunkwise(d, 16);
  for (int split : {1, 7, 16, 33, 49}) {
    for (int chunk : {1, 4, 16}) {
      const Result parts = RunChunkwise(d, chunk, split);
      for (size_t i = 0; i < whole.h.size(); ++i) {
        REQUIRE(parts.h[i] == Approx(whole.h[i]).margin(1e-5).epsilon(1e-4));
      }
      REQUIRE(parts.m == Approx(whole.m).margin(1e-5));
    }
  }
}

TEST_CASE("a saturated input gate keeps the state finite") {
  HeadData d = RandomHead(40, 8, 8, 7);
  for (float& g : d.ig) g = 80.0f;  // e^80 overflows fp32 without the m stabiliser
  const Result r = RunChunkwise(d, 16);
  for (float v : r.h) REQUIRE(std::isfinite(v));
  for (float v : r.C) REQUIRE(std::isfinite(v));
}

}  // namespace
}  // namespace xlserve::cpu
