// Warm-up and the CUDA backend's step graphs: after warm-up, no greedy decode or verify step of
// the shapes a server runs is run eagerly or captured inside a live step. Tagged "gpu".
#include <catch2/catch.hpp>

#include <vector>

#include "engine/model/model_weights.h"
#include "engine/warm_up.h"
#include "kernels/cuda_backend.h"
#include "tests/gpu/gpu_test_support.h"

namespace xlserve {
namespace {

// Runs `seqs` sequences of `len` tokens on slots [0, seqs): a decode step, or a verify (heads,
// every row's logits) whose commit of all `len` tokens is recorded for the next step.
void Step(Backend* gpu, int seqs, int len, bool verify) {
  const std::vector<int32_t> tokens(len, 7);
  std::vector<SequenceInput> batch(seqs);
  std::vector<CommitInput> commits;
  for (int i = 0; i < seqs; ++i) {
    batch[i].slot = i;
    batch[i].tokens = tokens;
    batch[i].tokens_only = true;
    batch[i].all_logits = batch[i].mtp_heads = batch[i].defer_commit = verify;
    commits.push_back({i, len});
  }
  ForwardOutput out;
  REQUIRE(gpu->Forward(batch, &out).ok());
  if (verify) REQUIRE(gpu->Commit(commits).ok());
}

int64_t Builds(const Backend* gpu) {
  const absl::StatusOr<int64_t> builds = kernels::DecodeGraphBuilds(gpu);
  REQUIRE(builds.ok());
  return *builds;
}

// The shipped code model: three mLSTM heads, which run side by side in small verifies, on
// buffers of their own that grow with the batch and the verify's length.
TEST_CASE("after warm-up, decode and verify steps of every batch replay the graphs warm-up captured") {
  auto weights = LoadModelWeights("models/xlstm-code-mtp");
  REQUIRE(weights.ok());
  constexpr int kMaxBatch = 8, kMaxDraft = 3;
  auto gpu = testing::MakeCudaBackend(*weights, kMaxBatch, DType::kBF16, Precision::kBf16);
  REQUIRE(WarmUp(gpu.get(), WarmUpOptions{kMaxBatch, 64, kMaxDraft}, nullptr).ok());
  const int64_t warmed = Builds(gpu.get());
  CHECK(warmed > 0);
  // Steps as the decoder makes them, from the largest batch down: decode; verifies of each
  // length, on committed states and then with the last one's commit fused; a decode step after a
  // verify, whose commit is applied on its own first (a batch that leaves speculation).
  for (int seqs : {8, 5, 4, 3, 2, 1}) {
    INFO(seqs << " sequences");
    for (int i = 0; i < seqs; ++i) REQUIRE(gpu->ResetSlot(i).ok());
    Step(gpu.get(), seqs, 1, false);
    for (int len = 1; len <= 1 + kMaxDraft; ++len) {
      Step(gpu.get(), seqs, 1, false);
      Step(gpu.get(), seqs, len, true);
      Step(gpu.get(), seqs, len, true);
    }
    Step(gpu.get(), seqs, 1, false);
    CHECK(Builds(gpu.get()) == warmed);
  }
  // A shape warm-up did not run (more drafts than it was told of) is built: the count counts.
  Step(gpu.get(), 2, 2 + kMaxDraft, true);
  CHECK(Builds(gpu.get()) > warmed);
}

}  // namespace
}  // namespace xlserve
