// The CPU backend split over tensor-parallel ranks (threads with an in-process all-reduce)
// against the same backend on one rank: the same bits for logits, MTP logits, argmax and every
// slot's state, through prefill, decode, a deferred verify and its commit (docs/design.md §10).
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <string>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/model_weights.h"
#include "tests/engine/speculation_checks.h"

namespace xlserve {
namespace {

std::shared_ptr<const ModelWeights> Load(const std::string& dir) {
  auto w = LoadModelWeights(dir);
  REQUIRE(w.ok());
  return *w;
}

std::unique_ptr<CpuBackend> Make(std::shared_ptr<const ModelWeights> weights, int ranks,
                                 Precision precision = Precision::kExact, int slots = 3) {
  CpuBackendOptions options;
  options.num_threads = 2;
  options.chunk_size = 16;  // several chunks in the longer prompt
  options.precision = precision;
  options.tensor_parallel = ranks;
  auto backend = CpuBackend::Create(std::move(weights), options);
  REQUIRE(backend.ok());
  REQUIRE((*backend)->AllocateSlots(slots).ok());
  return std::move(*backend);
}

void RequireSameBits(std::span<const float> a, std::span<const float> b, const std::string& what) {
  INFO(what);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      INFO("first difference at " << i << ": " << a[i] << " vs " << b[i]);
      REQUIRE(false);
    }
  }
}

void RequireSameOutput(const ForwardOutput& one, const ForwardOutput& split, const std::string& step) {
  REQUIRE(one.row_offset == split.row_offset);
  RequireSameBits(one.logits, split.logits, step + ": logits");
  REQUIRE(one.num_mtp_heads == split.num_mtp_heads);
  RequireSameBits(one.mtp_logits, split.mtp_logits, step + ": MTP logits");
  REQUIRE(one.argmax == split.argmax);
  REQUIRE(one.mtp_argmax == split.mtp_argmax);
}

void RequireSameStates(const Backend& one, const Backend& split, const std::string& step) {
  for (int slot = 0; slot < one.num_slots(); ++slot) {
    std::vector<float> a(one.state_layout().slot_floats()), b(a.size());
    REQUIRE(one.ReadSlot(slot, a).ok());
    REQUIRE(split.ReadSlot(slot, b).ok());
    RequireSameBits(a, b, step + ": state of slot " + std::to_string(slot));
  }
}

std::vector<int32_t> Tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (int32_t& v : t) v = id(rng);
  return t;
}

// Prefill of two prompts (one with all its logits), a decode step beside a deferred 4-token
// verify with the MTP heads, a partial commit, then a third sequence joining.
void CheckSplitMatchesOneRank(const std::string& label, std::shared_ptr<const ModelWeights> weights, int ranks,
                              Precision precision = Precision::kExact) {
  INFO(label << " on " << ranks << " ranks");
  const int vocab = weights->config.vocab_size;
  const bool heads = weights->config.mtp.has_value();
  auto one = Make(weights, 1, precision);
  auto split = Make(weights, ranks, precision);
  const std::vector<int32_t> long_prompt = Tokens(37, vocab, 1), short_prompt = Tokens(5, vocab, 2);
  const std::vector<int32_t> verify = Tokens(4, vocab, 3), next = Tokens(1, vocab, 4), third = Tokens(3, vocab, 5);

  auto run = [&](std::vector<SequenceInput> batch, const std::string& step) {
    ForwardOutput a, b;
    REQUIRE(one->Forward(batch, &a).ok());
    REQUIRE(split->Forward(batch, &b).ok());
    RequireSameOutput(a, b, step);
    RequireSameStates(*one, *split, step);
  };
  auto seq = [](int slot, const std::vector<int32_t>& tokens, bool mtp_heads, bool all_logits, bool defer) {
    SequenceInput in;
    in.slot = slot;
    in.tokens = tokens;
    in.mtp_heads = mtp_heads;
    in.all_logits = all_logits;
    in.defer_commit = defer;
    return in;
  };
  run({seq(0, long_prompt, heads, false, false), seq(1, short_prompt, false, true, false)}, "prefill");
  run({seq(0, verify, heads, true, true), seq(1, next, false, false, false)}, "verify beside a decode step");
  const CommitInput commit{0, 2};
  REQUIRE(one->Commit(std::span<const CommitInput>(&commit, 1)).ok());
  REQUIRE(split->Commit(std::span<const CommitInput>(&commit, 1)).ok());
  RequireSameStates(*one, *split, "commit of 2 of 4");
  run({seq(2, third, heads, false, false), seq(0, next, false, false, false)}, "a third sequence joins");
}

void CheckModel(const std::string& dir, int ranks, Precision precision = Precision::kExact) {
  CheckSplitMatchesOneRank(dir, Load(dir), ranks, precision);
}

TEST_CASE("the shipped model split over 2 and 4 ranks computes the bits of one rank, MTP heads included") {
  CheckModel("models/xlstm-code-mtp", 2);
  CheckModel("models/xlstm-code-mtp", 4);
}

TEST_CASE("golden models split over every rank count they allow compute the bits of one rank") {
  CheckModel("tests/golden/models/f32_heads4_wide", 2);
  CheckModel("tests/golden/models/f32_heads4_wide", 4);
  CheckModel("tests/golden/models/f32_caps_bias", 2);  // biases: added once, after the all-reduce
  CheckModel("tests/golden/models/f32_tied", 2);
  CheckModel("tests/golden/models/f32_fused", 2);
  CheckModel("tests/golden/models/bf16_base", 2, Precision::kBf16);
}

TEST_CASE("linear MTP heads are replicated and block heads split: both compute the bits of one rank") {
  for (MtpHeadType type : {MtpHeadType::kLinear, MtpHeadType::kMlstmBlock}) {
    INFO("head type " << static_cast<int>(type));
    CheckSplitMatchesOneRank("random MTP model", testing::MakeMtpModel(type, false, 7), 2);
  }
}

TEST_CASE("greedy speculation on a split backend gives the tokens of plain decoding") {
  testing::CheckGreedySpeculationIsLossless([](std::shared_ptr<const ModelWeights> weights, int slots) {
    return std::unique_ptr<Backend>(Make(std::move(weights), 2, Precision::kExact, slots));
  });
}

TEST_CASE("a rank count the model cannot split is an INVALID_ARGUMENT naming the counts it can") {
  const auto weights = Load("models/xlstm-code-mtp");  // 4 heads
  for (int ranks : {0, 3, 8}) {
    CpuBackendOptions options;
    options.tensor_parallel = ranks;
    auto backend = CpuBackend::Create(weights, options);
    REQUIRE_FALSE(backend.ok());
    CHECK(backend.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(backend.status().message()).find("splits over 1, 2, 4") != std::string::npos);
  }
  const auto one_head = Load("tests/golden/models/bf16_one_head_3blocks");
  CpuBackendOptions options;
  options.tensor_parallel = 2;
  CHECK_FALSE(CpuBackend::Create(one_head, options).ok());
}

}  // namespace
}  // namespace xlserve
