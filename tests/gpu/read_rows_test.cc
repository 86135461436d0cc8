// The last block's tail (head norm, out_proj, feed-forward) runs only on the rows whose logits
// a pass returns (kernels/forward_pass.cc): a prompt's other rows have advanced the state by
// then. Against the CPU reference, which runs every row: the returned logits, the MTP heads'
// (they read the residual stream before the last block), and the states the prompts leave,
// through the decode steps that read them.
#include <catch2/catch.hpp>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/model/model_weights.h"
#include "tests/gpu/gpu_test_support.h"

namespace xlserve {
namespace {

using testing::MaxAbsDiff;

// 128-token prompts take twice the room, as in cuda_backend_test.cc.
constexpr double kTol = 2 * testing::kExactTol;

TEST_CASE("rows past the last block that nothing reads skip its tail, and what is read stays right") {
  std::vector<std::pair<std::string, std::shared_ptr<const ModelWeights>>> models;
  for (const char* dir : {"tests/golden/models/f32_heads4_wide", "tests/golden/models/bf16_base",
                          "models/xlstm-code-mtp"}) {
    auto weights = LoadModelWeights(dir);
    REQUIRE(weights.ok());
    models.emplace_back(dir, *weights);
  }
  models.emplace_back("7b-head random", testing::SevenBHeadModel(5));
  for (const auto& [name, weights] : models) {
    INFO(name);
    const int vocab = weights->config.vocab_size;
    const bool heads = weights->config.mtp.has_value();
    auto gpu = testing::MakeCudaBackend(weights, 8, DType::kF32, Precision::kExact);
    auto cpu = testing::MakeCpuBackend(weights, 8, Precision::kExact);
    std::mt19937 rng(3);
    std::vector<std::vector<int32_t>> feed;  // owns every call's tokens
    feed.reserve(32);
    auto tokens = [&](int n) {
      feed.emplace_back(n);
      for (auto& t : feed.back()) t = static_cast<int32_t>(rng() % vocab);
      return std::span<const int32_t>(feed.back());
    };
    for (int slot = 0; slot < 4; ++slot) {
      REQUIRE(gpu->ResetSlot(slot).ok());
      REQUIRE(cpu->ResetSlot(slot).ok());
    }
    // Returned rows: the last of slots 0, 1 and 3, every one of slot 2's; 199 of 232 rows skip
    // the tail. Slots 1 and 2 run the heads, where the model has them.
    const std::vector<SequenceInput> prompts = {{0, tokens(1), false},
                                                {1, tokens(70), false, heads},
                                                {2, tokens(33), true, heads},
                                                {3, tokens(128), false}};
    ForwardOutput g, c;
    REQUIRE(gpu->Forward(prompts, &g).ok());
    REQUIRE(cpu->Forward(prompts, &c).ok());
    REQUIRE(g.logits.size() == size_t(1 + 1 + 33 + 1) * vocab);
    REQUIRE(g.row_offset == c.row_offset);
    CHECK(MaxAbsDiff(g.logits, c.logits) <= kTol);
    CHECK(g.argmax == c.argmax);
    if (heads) {
      REQUIRE(!g.mtp_logits.empty());
      CHECK(MaxAbsDiff(g.mtp_logits, c.mtp_logits) <= kTol);
    }
    // The next steps read the states every prompt row advanced.
    for (int step = 0; step < 3; ++step) {
      std::vector<SequenceInput> decode;
      for (int slot = 0; slot < 4; ++slot) {
        decode.push_back({slot, tokens(1), false, heads && (slot == 1 || slot == 2)});
      }
      ForwardOutput gd, cd;
      REQUIRE(gpu->Forward(decode, &gd).ok());
      REQUIRE(cpu->Forward(decode, &cd).ok());
      CHECK(MaxAbsDiff(gd.logits, cd.logits) <= kTol);
      if (heads) CHECK(MaxAbsDiff(gd.mtp_logits, cd.mtp_logits) <= kTol);
    }
  }
}

}  // namespace
}  // namespace xlserve
