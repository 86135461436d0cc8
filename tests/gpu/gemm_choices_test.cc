// The CUDA backend's GEMM choices: what timing chose, as benchmarks report it, and the choices
// timing left open, which warm-up's passes settle.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/warm_up.h"
#include "kernels/cuda_backend.h"
#include "tests/gpu/gpu_test_support.h"

namespace xlserve {
namespace {

using testing::MakeCpuBackend;
using testing::MakeCudaBackend;
using testing::MaxAbsDiff;

// Four prompts of 11 tokens in all, with every row's logits.
struct Prompts {
  std::vector<std::vector<int32_t>> tokens = {{5, 6, 7}, {8}, {9, 10, 11, 12, 13}, {14, 15}};
  std::vector<SequenceInput> Batch() const {
    std::vector<SequenceInput> batch;
    for (int i = 0; i < 4; ++i) batch.push_back({i, tokens[i], /*all_logits=*/true});
    return batch;
  }
};

absl::Status ResetAll(Backend* b, int slots) {
  for (int i = 0; i < slots; ++i) {
    if (absl::Status st = b->ResetSlot(i); !st.ok()) return st;
  }
  return absl::OkStatus();
}

// Benchmarks report what warm-up's timing chose (bench --shape 7b --json, "gemm_choices"), to
// tell a slower run's kernels from a faster one's: every timed shape, its candidates' times and
// the one taken, which must be one of them.
TEST_CASE("the GEMM choices name every timed shape's candidates and the one taken") {
  auto weights = testing::SevenBHeadModel(11);
  auto gpu = MakeCudaBackend(weights, 4, DType::kBF16, Precision::kBf16);
  ForwardOutput out;
  REQUIRE(gpu->Forward(Prompts().Batch(), &out).ok());
  auto choices = kernels::GemmChoices(gpu.get());
  REQUIRE(choices.ok());
  REQUIRE_FALSE(choices->empty());
  for (const GemmChoice& c : *choices) {
    INFO(c.n << " x " << c.k << " over " << c.rows << " rows" << (c.swiglu ? ", SwiGLU" : "") << ": " << c.chosen);
    CHECK(c.n > 0);
    CHECK(c.k > 0);
    // The pass's 11 rows, or the unembedding's 4: each sequence's last row.
    CHECK((c.rows == 11 || c.rows == 4));
    REQUIRE_FALSE(c.candidates_ms.empty());
    bool listed = false;
    for (const auto& [name, ms] : c.candidates_ms) {
      CHECK(ms > 0);
      CHECK(std::isfinite(ms));
      listed = listed || name == c.chosen;
    }
    CHECK(listed);
  }
  auto cpu = MakeCpuBackend(weights, 1, Precision::kBf16);
  CHECK(kernels::GemmChoices(cpu.get()).status().code() == absl::StatusCode::kInvalidArgument);
}

// With every choice left open, each candidate of each must compute the same pass (they differ
// only in the order of their sums), and warm-up must settle the ones its passes run, each on
// the candidate whose pass was fastest.
TEST_CASE("every candidate of an open GEMM choice computes the pass, and warm-up settles on the fastest") {
  auto weights = testing::SevenBHeadModel(12, 17.5);
  auto gpu = MakeCudaBackend(weights, 4, DType::kBF16, Precision::kBf16);
  REQUIRE(kernels::SetGemmOpenGap(gpu.get(), 1e9f).ok());
  const Prompts prompts;
  ForwardOutput first;
  REQUIRE(gpu->Forward(prompts.Batch(), &first).ok());
  const std::vector<OpenChoice> open = gpu->OpenChoices();
  REQUIRE_FALSE(open.empty());
  float scale = 0;
  for (float v : first.logits) scale = std::max(scale, std::fabs(v));
  for (const OpenChoice& choice : open) {
    REQUIRE(choice.candidates >= 2);
    for (int c = 0; c < choice.candidates; ++c) {
      INFO("choice " << choice.id << ", candidate " << c);
      REQUIRE(gpu->TakeCandidate(choice.id, c, {}).ok());
      REQUIRE(ResetAll(gpu.get(), 4).ok());
      ForwardOutput out;
      REQUIRE(gpu->Forward(prompts.Batch(), &out).ok());
      REQUIRE(out.logits.size() == first.logits.size());
      // bf16 activations: a candidate's other summation order moves a logit by rounding only.
      CHECK(MaxAbsDiff(out.logits, first.logits) <= 2e-2f * scale);
    }
    REQUIRE(gpu->TakeCandidate(choice.id, 0, {}).ok());
  }
  CHECK(gpu->TakeCandidate(open.front().id, open.front().candidates, {}).code() ==
        absl::StatusCode::kInvalidArgument);

  // Warm-up on a fresh backend: its passes open the choices and settle them.
  auto warm = MakeCudaBackend(weights, 4, DType::kBF16, Precision::kBf16);
  REQUIRE(kernels::SetGemmOpenGap(warm.get(), 1e9f).ok());
  WarmUpOptions options;
  options.max_batch = 4;
  options.max_step_tokens = 32;
  REQUIRE(WarmUp(warm.get(), options, nullptr).ok());
  auto choices = kernels::GemmChoices(warm.get());
  REQUIRE(choices.ok());
  int settled = 0;
  for (const GemmChoice& c : *choices) {
    if (c.pass_ms.empty()) continue;
    INFO(c.n << " x " << c.k << " over " << c.rows << " rows: " << c.chosen);
    ++settled;
    REQUIRE(c.pass_ms.size() >= 2);
    const auto fastest = std::min_element(c.pass_ms.begin(), c.pass_ms.end(),
                                          [](const auto& a, const auto& b) { return a.second < b.second; });
    CHECK(fastest->first == c.chosen);
    for (const auto& [name, ms] : c.pass_ms) {
      CHECK(ms > 0);
      const bool listed = std::any_of(c.candidates_ms.begin(), c.candidates_ms.end(),
                                      [&](const auto& t) { return t.first == name; });
      CHECK(listed);
    }
  }
  // The ladder's passes (8-32 rows) and the largest passes open shapes of their own.
  CHECK(settled >= 3);
  // The SwiGLU epilogue's choice among them: a pass, not timing alone, decides whether it runs.
  CHECK(std::any_of(choices->begin(), choices->end(),
                    [](const GemmChoice& c) { return c.swiglu && c.pass_ms.size() >= 2; }));
  // Where the SwiGLU epilogue won, the plain product of that shape never runs: no pass settles it.
  for (const GemmChoice& fused : *choices) {
    if (!fused.swiglu || fused.chosen.find("with the SwiGLU epilogue") == std::string::npos) continue;
    for (const GemmChoice& c : *choices) {
      if (c.swiglu || c.n != fused.n || c.k != fused.k || c.rows != fused.rows) continue;
      INFO(c.n << " x " << c.k << " over " << c.rows << " rows, beside " << fused.chosen);
      CHECK(c.pass_ms.empty());
    }
  }
  // The settled backend still computes the pass.
  REQUIRE(ResetAll(warm.get(), 4).ok());
  ForwardOutput out;
  REQUIRE(warm->Forward(prompts.Batch(), &out).ok());
  CHECK(MaxAbsDiff(out.logits, first.logits) <= 2e-2f * scale);
}

}  // namespace
}  // namespace xlserve
