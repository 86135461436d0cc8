#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include "engine/parallel/communicator.h"
#include "engine/parallel/in_process_group.h"
#include "engine/parallel/tensor_parallel_plan.h"

namespace xlserve {
namespace {

ModelConfig Config(int heads, int hidden, double ffn_factor, int vocab) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.num_blocks = 1;
  c.num_heads = heads;
  c.ffn_proj_factor = ffn_factor;
  return c;
}

TEST_CASE("the plan splits heads, FFN and vocabulary into contiguous ranges that cover them") {
  // xLSTM-7b: 8 heads, FFN 10944, vocabulary 50304.
  const ModelConfig c = Config(8, 4096, 2.667, 50304);
  REQUIRE(TensorParallelPlan::ReduceParts(c) == 8);
  for (int ranks : {1, 2, 4, 8}) {
    auto plan = TensorParallelPlan::Create(c, ranks);
    REQUIRE(plan.ok());
    CHECK(plan->reduce_parts_per_rank() * ranks == 8);
    int64_t heads = 0, ffn = 0, vocab = 0, v = 0;
    for (int r = 0; r < ranks; ++r) {
      CHECK(plan->heads(r).begin == heads);
      CHECK(plan->ffn(r).begin == ffn);
      CHECK(plan->vocab(r).begin == vocab);
      CHECK(plan->v_columns(r).begin == v);
      CHECK(plan->qk_columns(r).count == plan->heads(r).count * c.qk_head_dim());
      heads += plan->heads(r).count;
      ffn += plan->ffn(r).count;
      vocab += plan->vocab(r).count;
      v += plan->v_columns(r).count;
    }
    CHECK(heads == 8);
    CHECK(ffn == c.ffn_dim());
    CHECK(vocab == 50304);
    CHECK(v == c.v_dim());
  }
  // A vocabulary that does not divide: the first ranks take one more.
  auto odd = TensorParallelPlan::Create(Config(4, 64, 2.0, 10), 4);
  REQUIRE(odd.ok());
  CHECK(odd->vocab(0).count == 3);
  CHECK(odd->vocab(1).count == 3);
  CHECK(odd->vocab(2).begin == 6);
  CHECK(odd->vocab(3).count == 2);
}

TEST_CASE("a rank count the model cannot split is refused with the counts it can") {
  const ModelConfig four = Config(4, 192, 2.0, 4096);  // the shipped model's shape
  REQUIRE(TensorParallelPlan::ReduceParts(four) == 4);
  for (int bad : {0, 3, 8, 16, -2}) {
    auto plan = TensorParallelPlan::Create(four, bad);
    REQUIRE_FALSE(plan.ok());
    CHECK(plan.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(plan.status().message()).find("splits over 1, 2, 4") != std::string::npos);
  }
  // The FFN limits the split too: 8 heads but an FFN of 66 share only a factor 2; one head: none.
  ModelConfig narrow_ffn = Config(8, 64, 1.03125, 256);
  narrow_ffn.ffn_round_up_to_multiple_of = 2;
  REQUIRE(narrow_ffn.ffn_dim() == 66);
  CHECK(TensorParallelPlan::ReduceParts(narrow_ffn) == 2);
  CHECK(TensorParallelPlan::ReduceParts(Config(1, 64, 2.667, 256)) == 1);
  CHECK_FALSE(TensorParallelPlan::Create(Config(1, 64, 2.667, 256), 2).ok());
}

TEST_CASE("PairwiseSum adds adjacent pairs level by level") {
  std::vector<float> v = {1e8f, 1.0f, -1e8f, 1.0f};
  // (1e8 + 1) + (-1e8 + 1) rounds each pair to ±1e8: 0; left to right would give 1.
  CHECK(PairwiseSum(v) == 0.0f);
  std::vector<float> one = {3.5f};
  CHECK(PairwiseSum(one) == 3.5f);
}

TEST_CASE("the in-process all-reduce gives every rank the pairwise sum of the ranks' data") {
  for (int ranks : {1, 2, 4, 8}) {
    InProcessGroup group(ranks);
    std::mt19937 rng(ranks);
    std::normal_distribution<float> normal(0.0f, 1e4f);
    const int rounds = 5, n = 257;
    // inputs[round][rank][i]
    std::vector<std::vector<std::vector<float>>> inputs(rounds, std::vector<std::vector<float>>(ranks));
    for (auto& round : inputs) {
      for (auto& data : round) {
        data.resize(n);
        for (float& x : data) x = normal(rng);
      }
    }
    std::vector<std::vector<std::vector<float>>> results = inputs;
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r) {
      threads.emplace_back([&, r] {
        Communicator& comm = group.rank(r);
        CHECK(comm.rank() == r);
        CHECK(comm.size() == ranks);
        for (int round = 0; round < rounds; ++round) comm.AllReduceSum(results[round][r]);
      });
    }
    for (auto& t : threads) t.join();
    for (int round = 0; round < rounds; ++round) {
      for (int i = 0; i < n; ++i) {
        std::vector<float> column(ranks);
        for (int r = 0; r < ranks; ++r) column[r] = inputs[round][r][i];
        const float expected = PairwiseSum(column);
        for (int r = 0; r < ranks; ++r) {
          const float got = results[round][r][i];
          REQUIRE(std::memcmp(&got, &expected, sizeof(float)) == 0);
        }
      }
    }
  }
}

}  // namespace
}  // namespace xlserve
