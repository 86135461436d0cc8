// The CUDA backend on a GPU: transformers' golden outputs (exact precision; bf16 precision
// against transformers in bf16), agreement with the CPU reference in the same precision on mixed
// batches (fp32 and bf16 state, golden models and a 7B-shaped head), batch independence and slot
// isolation. Tagged "gpu": run on a CUDA machine (README "GPU tests and benchmarks"),
// not in CPU CI.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "engine/model/model_weights.h"
#include "engine/sampling/logprobs.h"
#include "engine/state_cache.h"
#include "kernels/cuda_backend.h"
#include "tests/engine/bf16_golden_check.h"
#include "tests/engine/golden_case.h"
#include "tests/gpu/gpu_test_support.h"

namespace xlserve {
namespace {

// Both backends compute in fp32 (testing::kExactTol says why it holds). A bf16 state is rounded
// to 8 mantissa bits after every call, and on these tiny random models (per-head norms over
// 8-64 values amplify cancellation) that moved decode logits by up to 0.26 after a few steps;
// so bf16-state comparisons start the CPU from the GPU's rounded state before each step, which
// makes them as tight as fp32 while still checking every kernel.
constexpr double kTol = testing::kExactTol;
// The bf16 precision against the CPU's bf16 precision: both round the same activations to bf16
// before the products, but a value that the two summation orders leave on either side of a
// bf16 rounding boundary rounds one way on the GPU and the other on the CPU, moving its
// products by 2^-8 relative instead of ~1e-7. Those are a few of all the roundings whose whole
// effect is the CPU's bf16 logits minus its exact ones, measured here on the same batch (on
// the golden models 0.09-0.6 at prefill): kTol plus half of that whole effect bounds them (an
// H200 measured at most 0.23 of it).
constexpr double kShareOfBf16Effect = 0.5;

std::unique_ptr<Backend> Cuda(std::shared_ptr<const ModelWeights> w, int slots, DType state = DType::kF32,
                              Precision precision = Precision::kExact) {
  return testing::MakeCudaBackend(std::move(w), slots, state, precision);
}

std::unique_ptr<Backend> Cpu(std::shared_ptr<const ModelWeights> w, int slots, Precision precision) {
  return testing::MakeCpuBackend(std::move(w), slots, precision);
}

using testing::MaxAbsDiff;

const char* StateName(DType t) { return t == DType::kF32 ? "f32" : "bf16"; }

TEST_CASE("every golden case through the CUDA backend, fp32 and bf16 state") {
  const auto cases = testing::LoadGoldenCases();
  REQUIRE(cases.size() >= 8);
  for (DType state : {DType::kF32, DType::kBF16}) {
    for (const auto& c : cases) {
      auto weights = LoadModelWeights(c.dir);
      REQUIRE(weights.ok());
      auto backend = Cuda(*weights, 1, state);
      auto cache = StateCache::Create(backend.get(), 1);
      REQUIRE(cache.ok());
      Generator generator(backend.get(), &*cache);
      double worst = 0;
      bool same = true;
      for (const auto& p : c.prompts) {
        GenerationRequest r;
        r.prompt_ids.assign(p.prompt_ids.begin(), p.prompt_ids.end());
        r.max_new_tokens = static_cast<int>(p.greedy_tokens.size());
        auto out = generator.Generate(r);
        REQUIRE(out.ok());
        worst = std::max(worst, MaxAbsDiff(out->prompt_last_logits, p.last_logits));
        same = same && std::vector<int>(out->tokens.begin(), out->tokens.end()) == p.greedy_tokens;
      }
      std::printf("cuda golden %-24s %-8s state %-4s max|dlogit| %.3g greedy %s\n", c.name.c_str(),
                  c.weights_dtype.c_str(), StateName(state), worst, same ? "identical" : "different");
      INFO(c.name << " state " << StateName(state));
      CHECK(worst <= 2e-2);  // the issue's bound; prompt logits come from a zero state
      // Greedy continuations read the state back after every token; with a bf16 state they
      // may drift from transformers' fp32 ones (reported above, not required).
      if (state == DType::kF32) CHECK(same);
    }
  }
}

TEST_CASE("the bf16 precision against transformers running the bf16 golden models in bf16") {
  int checked = 0;
  for (const auto& c : testing::LoadGoldenCases()) {
    if (c.bf16_prompts.empty()) continue;
    auto weights = LoadModelWeights(c.dir);
    REQUIRE(weights.ok());
    auto backend = Cuda(*weights, 1, DType::kF32, Precision::kBf16);
    testing::CheckBf16Golden(backend.get(), c, "cuda");
    ++checked;
  }
  CHECK(checked == 2);
}

// The largest difference between two backends' slot states over the batch's slots, each
// element relative to the second's value and at least 1 (n and m sit beside far larger C values).
double StateDiff(const Backend& a, const Backend& b, const std::vector<SequenceInput>& batch) {
  std::vector<float> x(a.state_layout().slot_floats()), y(x.size());
  double worst = 0;
  for (const auto& s : batch) {
    REQUIRE(a.ReadSlot(s.slot, x).ok());
    REQUIRE(b.ReadSlot(s.slot, y).ok());
    for (size_t i = 0; i < x.size(); ++i) {
      worst = std::max(worst, std::fabs(double(x[i]) - y[i]) / std::max(1.0, std::fabs(double(y[i]))));
    }
  }
  return worst;
}

// A reset prompt's first output is h_0 = P_00 v_0 / max(|P_00|, exp(-m_0)) with P_00 ∝ q̂_0 · k_0,
// and the multi-head norm after the mLSTM scales it back to ±v_0: where q̂_0 · k_0 nearly cancels
// in some layer, rounding decides the sign of the whole row, in any backend. Such tokens belong
// to the weights (the 7B-shaped head of seed 5: the median token's lone logits move by 0.0069
// between the CPU's own two precisions, three tokens of 512 by 1.3-3.0, and the CUDA backend's
// exact precision then differs from the CPU's by 7e-3 at one). The tokens that the CPU's
// precisions place at most 8x the median apart: those a prompt may start with.
std::vector<bool> WellConditionedStarts(std::shared_ptr<const ModelWeights> weights) {
  const int vocab = weights->config.vocab_size;
  auto exact = Cpu(weights, 1, Precision::kExact);
  auto bf16 = Cpu(weights, 1, Precision::kBf16);
  std::vector<double> moved(vocab);
  for (int32_t token = 0; token < vocab; ++token) {
    const SequenceInput in{0, std::span<const int32_t>(&token, 1), true};
    ForwardOutput a, b;
    REQUIRE(exact->ResetSlot(0).ok());
    REQUIRE(bf16->ResetSlot(0).ok());
    REQUIRE(exact->Forward(std::span(&in, 1), &a).ok());
    REQUIRE(bf16->Forward(std::span(&in, 1), &b).ok());
    moved[token] = MaxAbsDiff(a.logits, b.logits);
  }
  std::vector<double> sorted = moved;
  std::nth_element(sorted.begin(), sorted.begin() + vocab / 2, sorted.end());
  const double limit = 8 * sorted[vocab / 2];
  std::vector<bool> usable(vocab);
  for (int t = 0; t < vocab; ++t) usable[t] = moved[t] <= limit;
  return usable;
}

// Prefill of prompts of mixed lengths in one batch, then decode steps of the whole batch:
// CUDA against the CPU reference; and each decode step against each sequence alone on a second
// CUDA backend that starts from the same states. reset_all: every prompt from a reset slot, so
// that prompts of at most one chunk (long_prompt <= 128) take the fresh-chunk kernel alone.
// starts: the tokens a prompt may start with (WellConditionedStarts); empty: any.
void CompareWithCpu(std::shared_ptr<const ModelWeights> weights, DType state, Precision precision,
                    const std::string& name, int long_prompt, bool reset_all = false,
                    const std::vector<bool>& starts = {}) {
  const int vocab = weights->config.vocab_size;
  const bool fp32_weights = weights->blocks[0].q_w.dtype == DType::kF32;
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> prompts;
  // Chunkwise prefill applies 128 tokens per chunk to the state, its outputs in tiles of 32: lengths
  // below, at and across tile and chunk boundaries, and a long prompt of two or three chunks.
  for (int len : {1, 5, 17, 32, 70, 100, 128, long_prompt}) {
    std::vector<int32_t> p(len);
    for (auto& t : p) t = static_cast<int32_t>(rng() % vocab);
    while (!starts.empty() && !starts[p[0]]) p[0] = static_cast<int32_t>(rng() % vocab);
    prompts.push_back(p);
  }
  auto gpu = Cuda(weights, 16, state, precision);
  auto cpu = Cpu(weights, 16, precision);
  // The CPU in the exact precision beside the bf16 one: the whole effect of rounding to bf16.
  const bool bf16 = precision == Precision::kBf16;
  auto cpu_exact = bf16 ? Cpu(weights, 16, Precision::kExact) : nullptr;
  std::vector<SequenceInput> batch;
  for (size_t i = 0; i < prompts.size(); ++i) batch.push_back({static_cast<int>(2 * i), prompts[i], true});
  // Half the prompts (all with reset_all) start from a reset (the chunkwise kernels then skip
  // reading the zero state), the rest from a slot that was never reset (its state read like any other).
  for (size_t i = 0; i < batch.size(); i += reset_all ? 1 : 2) REQUIRE(gpu->ResetSlot(batch[i].slot).ok());
  ForwardOutput g, c, e;
  REQUIRE(gpu->Forward(batch, &g).ok());
  REQUIRE(cpu->Forward(batch, &c).ok());
  const double prefill_diff = MaxAbsDiff(g.logits, c.logits);
  std::string per_prompt;  // where along the prompts the difference lies
  for (size_t i = 0; i < prompts.size(); ++i) {
    double worst = 0;
    int worst_at = 0;
    for (int r = g.row_offset[i]; r < g.row_offset[i + 1]; ++r) {
      const double d = MaxAbsDiff(g.Row(r), c.Row(r));
      if (d > worst) std::tie(worst, worst_at) = std::pair{d, r - g.row_offset[i]};
    }
    per_prompt +=
        " " + std::to_string(prompts[i].size()) + ":" + std::to_string(worst) + "@" + std::to_string(worst_at);
  }
  double prefill_effect = 0, decode_effect = 0;
  if (bf16) {
    REQUIRE(cpu_exact->Forward(batch, &e).ok());
    prefill_effect = MaxAbsDiff(c.logits, e.logits);
  }
  // The states the decode steps leave, n and m included (the step kernel writes them itself
  // where a head's column tiles form one cluster), against the CPU's own: with an fp32 state in
  // the exact precision the CPU keeps its own states. Six steps may add little to what the
  // prompts left; a wrong or missing n or m is off by its own scale.
  const bool compare_states = state == DType::kF32 && !bf16;
  const double prompt_state_diff = compare_states ? StateDiff(*gpu, *cpu, batch) : 0.0;
  auto alone = Cuda(weights, 16, state, precision);
  std::vector<float> st(gpu->state_layout().slot_floats());
  for (auto& s : batch) {
    REQUIRE(gpu->ReadSlot(s.slot, st).ok());
    REQUIRE(alone->WriteSlot(s.slot, st).ok());
  }
  double decode_diff = 0, alone_diff = 0;
  for (int step = 0; step < 6; ++step) {
    std::vector<int32_t> next(batch.size());
    std::vector<SequenceInput> decode;
    for (size_t i = 0; i < batch.size(); ++i) {
      next[i] = static_cast<int32_t>((step * 31 + i * 7) % vocab);
      decode.push_back({batch[i].slot, std::span<const int32_t>(&next[i], 1), false});
    }
    if (state == DType::kBF16) {
      for (auto& s : batch) {
        REQUIRE(gpu->ReadSlot(s.slot, st).ok());
        REQUIRE(cpu->WriteSlot(s.slot, st).ok());
        if (bf16) REQUIRE(cpu_exact->WriteSlot(s.slot, st).ok());
      }
    }
    ForwardOutput together, cpu_out;
    REQUIRE(gpu->Forward(decode, &together).ok());
    REQUIRE(cpu->Forward(decode, &cpu_out).ok());
    decode_diff = std::max(decode_diff, MaxAbsDiff(together.logits, cpu_out.logits));
    if (bf16) {
      ForwardOutput exact_out;
      REQUIRE(cpu_exact->Forward(decode, &exact_out).ok());
      decode_effect = std::max(decode_effect, MaxAbsDiff(cpu_out.logits, exact_out.logits));
    }
    for (size_t i = 0; i < decode.size(); ++i) {
      ForwardOutput o;
      REQUIRE(alone->Forward(std::span<const SequenceInput>(&decode[i], 1), &o).ok());
      alone_diff = std::max(alone_diff, MaxAbsDiff(together.LastRow(static_cast<int>(i)), o.LastRow(0)));
    }
  }
  const double state_diff = compare_states ? StateDiff(*gpu, *cpu, batch) : 0.0;
  // A second multi-token chunk of every sequence: the chunkwise kernels from a state they read.
  std::vector<std::vector<int32_t>> more(batch.size(), std::vector<int32_t>(45));
  std::vector<SequenceInput> continued;
  for (size_t i = 0; i < batch.size(); ++i) {
    for (auto& t : more[i]) t = static_cast<int32_t>(rng() % vocab);
    continued.push_back({batch[i].slot, more[i], true});
    if (state == DType::kBF16) {
      REQUIRE(gpu->ReadSlot(batch[i].slot, st).ok());
      REQUIRE(cpu->WriteSlot(batch[i].slot, st).ok());
    }
  }
  ForwardOutput gpu_more, cpu_more;
  REQUIRE(gpu->Forward(continued, &gpu_more).ok());
  REQUIRE(cpu->Forward(continued, &cpu_more).ok());
  const double continued_diff = MaxAbsDiff(gpu_more.logits, cpu_more.logits);
  const std::string prec(PrecisionName(precision));
  const double prefill_tol = kTol + kShareOfBf16Effect * prefill_effect;
  const double decode_tol = kTol + kShareOfBf16Effect * decode_effect;
  std::printf("cuda vs cpu %-24s %-5s state %-4s prefill %.3g (bound %.3g) decode %.3g (bound %.3g); batched vs alone "
              "%.3g\n",
              name.c_str(), prec.c_str(), StateName(state), prefill_diff, prefill_tol, decode_diff, decode_tol,
              alone_diff);
  std::printf("  prefill by prompt length:%s; a second chunk %.3g; states after the prompts %.3g, after decode %.3g\n",
              per_prompt.c_str(), continued_diff, prompt_state_diff, state_diff);
  INFO(name << " " << prec << " state " << StateName(state));
  CHECK(prefill_diff <= prefill_tol);
  CHECK(decode_diff <= decode_tol);
  CHECK(continued_diff <= prefill_tol);
  CHECK(state_diff <= 4 * prompt_state_diff + kTol);
  // fp32 weights, and bf16 matrices this small: the GEMVs and the step kernel sum in an order
  // fixed by the shape, so a row gives the same bits alone or batched. Larger bf16 matrices
  // switch from the GEMV to cuBLAS above two rows, and cuBLAS may pick another kernel for 4
  // rows than for 16; such reordered fp32 sums move these logits by ~1e-6 (a bf16 state then
  // rounds some values the other way: up to 1e-2).
  // In the bf16 precision those reordered sums also round an activation to the neighbouring
  // bf16 value now and then (kShareOfBf16Effect's reasoning).
  if (fp32_weights) {
    CHECK(alone_diff == 0.0);
  } else {
    CHECK(alone_diff <= (bf16 ? decode_tol : 1e-4));
  }
}

TEST_CASE("CUDA agrees with the CPU reference on mixed batches, and batching changes nothing") {
  // 300 tokens: three chunks, so a carry is read and written in between. The one-head model
  // amplifies rounding along a prompt: at 300 tokens its exact-precision logits end up past kTol
  // under both chunkwise designs measured (2.7e-3 with 32-token chunks walked by one kernel, 3.6e-3
  // with these, at token 279), where every position up to 128 stays under 1e-3; it takes a
  // two-chunk prompt, the other models three.
  for (const auto& [name, long_prompt] : {std::pair{"f32_heads4_wide", 300}, std::pair{"bf16_base", 300},
                                          std::pair{"f32_caps_bias", 300}, std::pair{"bf16_one_head_3blocks", 160}}) {
    auto weights = LoadModelWeights(std::string("tests/golden/models/") + name);
    REQUIRE(weights.ok());
    for (Precision precision : {Precision::kExact, Precision::kBf16}) {
      for (DType state : {DType::kF32, DType::kBF16}) CompareWithCpu(*weights, state, precision, name, long_prompt);
    }
  }
}

// A prompt of nine chunks: the gates kernel scans 8 chunks at once (mlstm_chunk_prep.cu) and carries the
// stabiliser from one round to the next, which shorter prompts never reach.
TEST_CASE("a prompt longer than one round of the chunk gate scan agrees with the CPU reference") {
  auto weights = LoadModelWeights("tests/golden/models/f32_heads4_wide");
  REQUIRE(weights.ok());
  for (DType state : {DType::kF32, DType::kBF16}) {
    CompareWithCpu(*weights, state, Precision::kExact, "nine chunks", 1100);
  }
}

// The serving step: decode rows beside new prompts of one chunk from reset slots. There the
// prompts' blocks run inside the step kernel's launch (mlstm_fresh_chunk.cuh, MlstmStepBesideFresh),
// so the step after reads the states they wrote. The 7B-shaped head (dqk 256, dv 512) has the
// serving model's tiles: two update row tiles and four output column tiles per head.
TEST_CASE("new one-chunk prompts beside decode rows leave the states the next steps read") {
  std::vector<std::pair<std::string, std::shared_ptr<const ModelWeights>>> models;
  for (const char* name : {"f32_heads4_wide", "bf16_base"}) {
    auto weights = LoadModelWeights(std::string("tests/golden/models/") + name);
    REQUIRE(weights.ok());
    models.emplace_back(name, *weights);
  }
  models.emplace_back("7b-head random", testing::SevenBHeadModel(7));
  for (const auto& [name, weights] : models) {
    const int vocab = weights->config.vocab_size;
    auto gpu = Cuda(weights, 8);
    auto cpu = Cpu(weights, 8, Precision::kExact);
    std::mt19937 rng(11);
    auto tokens = [&](int n) {
      std::vector<int32_t> t(n);
      for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
      return t;
    };
    std::vector<std::vector<int32_t>> feed;  // owns every call's tokens
    feed.reserve(64);
    // Each entry: slot, tokens, whether the slot starts from a reset (a new prompt).
    auto run = [&](const std::vector<std::tuple<int, int, bool>>& entries) {
      std::vector<SequenceInput> in;
      for (auto [slot, n, reset] : entries) {
        if (reset) {
          REQUIRE(gpu->ResetSlot(slot).ok());
          REQUIRE(cpu->ResetSlot(slot).ok());
        }
        feed.push_back(tokens(n));
        in.push_back({slot, feed.back(), true});
      }
      ForwardOutput g, c;
      REQUIRE(gpu->Forward(in, &g).ok());
      REQUIRE(cpu->Forward(in, &c).ok());
      return MaxAbsDiff(g.logits, c.logits);
    };
    INFO(name);
    // Every position of 128-token prompts: under compute-sanitizer, whose timing moves cuBLASLt's
    // choice of algorithm and so the summation order, bf16_base reached 1.01e-3.
    const double prompt_tol = 2 * kTol;
    CHECK(run({{0, 20, true}, {1, 9, true}}) <= kTol);  // two streams' prompts
    CHECK(run({{0, 1, false}, {1, 1, false}, {2, 100, true}, {3, 128, true}}) <= prompt_tol);
    for (int step = 0; step < 3; ++step) {
      CHECK(run({{0, 1, false}, {1, 1, false}, {2, 1, false}, {3, 1, false}}) <= kTol);
    }
    std::vector<float> g_state(gpu->state_layout().slot_floats()), c_state(g_state.size());
    for (int slot : {0, 1, 2, 3}) {  // decoded beside the prompts, and the prompts
      REQUIRE(gpu->ReadSlot(slot, g_state).ok());
      REQUIRE(cpu->ReadSlot(slot, c_state).ok());
      double largest = 1;
      for (float v : c_state) largest = std::max(largest, double(std::fabs(v)));
      CHECK(MaxAbsDiff(g_state, c_state) <= kTol * largest);
    }
  }
}

TEST_CASE("7B-shaped heads (dqk 256, dv 512) agree with the CPU reference") {
  auto weights = testing::SevenBHeadModel(3);
  for (Precision precision : {Precision::kExact, Precision::kBf16}) {
    for (DType state : {DType::kF32, DType::kBF16}) CompareWithCpu(weights, state, precision, "7b-head random", 300);
  }
}

// New prompts alone, each of at most one chunk, take the fresh-chunk kernel (mlstm_fresh_chunk.cu):
// at this shape 2 x 8 update tiles of 64 columns a head in bf16 pairs, 2 x 16 of 32 in 3xTF32.
// The decode steps and the second chunk after the prompts read the states it wrote. The prompts
// start with well-conditioned tokens (WellConditionedStarts): every prompt's first row is compared.
TEST_CASE("7B-shaped heads agree with the CPU reference when new prompts come alone") {
  auto weights = testing::SevenBHeadModel(5);
  const std::vector<bool> starts = WellConditionedStarts(weights);
  for (Precision precision : {Precision::kExact, Precision::kBf16}) {
    for (DType state : {DType::kF32, DType::kBF16}) {
      CompareWithCpu(weights, state, precision, "7b-head new prompts", 128, true, starts);
    }
  }
}

// Random prompts on slots 0 .. seqs - 1, sequence i of 1 + i % max_len tokens (held in prompts).
std::vector<SequenceInput> PromptsOnSlots(int seqs, int max_len, int vocab, std::mt19937& rng,
                                          std::vector<std::vector<int32_t>>* prompts) {
  prompts->assign(seqs, {});
  std::vector<SequenceInput> batch;
  for (int i = 0; i < seqs; ++i) {
    (*prompts)[i].resize(1 + i % max_len);
    for (auto& t : (*prompts)[i]) t = static_cast<int32_t>(rng() % vocab);
    batch.push_back({i, (*prompts)[i], true});
  }
  return batch;
}

// The step kernel forms clusters and writes n and m itself only in a grid of one wave (two
// blocks an SM); past that the normaliser writes them after it. 64 sequences of the 7B head's 8
// fp32 column tiles are 512 blocks, more than one wave on any GPU of up to 256 SMs (the H200 has
// 132), while CompareWithCpu's 8 sequences fit one. So this runs the other path: its logits and
// the states it leaves, n and m included, against the CPU's.
TEST_CASE("7B-shaped heads agree with the CPU reference in a decode grid of several waves") {
  constexpr int kSeqs = 64;
  auto weights = testing::SevenBHeadModel(9);
  const int vocab = weights->config.vocab_size;
  auto gpu = Cuda(weights, kSeqs, DType::kF32, Precision::kExact);
  auto cpu = Cpu(weights, kSeqs, Precision::kExact);
  std::mt19937 rng(13);
  std::vector<std::vector<int32_t>> prompts;
  const std::vector<SequenceInput> batch = PromptsOnSlots(kSeqs, 9, vocab, rng, &prompts);
  ForwardOutput g, c;
  REQUIRE(gpu->Forward(batch, &g).ok());
  REQUIRE(cpu->Forward(batch, &c).ok());
  CHECK(MaxAbsDiff(g.logits, c.logits) <= kTol);
  const double prompt_state_diff = StateDiff(*gpu, *cpu, batch);
  double decode_diff = 0;
  std::vector<int32_t> next(kSeqs);
  for (int step = 0; step < 4; ++step) {
    std::vector<SequenceInput> decode;
    for (int i = 0; i < kSeqs; ++i) {
      next[i] = static_cast<int32_t>((step * 17 + i * 5) % vocab);
      decode.push_back({i, std::span<const int32_t>(&next[i], 1), false});
    }
    REQUIRE(gpu->Forward(decode, &g).ok());
    REQUIRE(cpu->Forward(decode, &c).ok());
    decode_diff = std::max(decode_diff, MaxAbsDiff(g.logits, c.logits));
  }
  const double state_diff = StateDiff(*gpu, *cpu, batch);
  std::printf("7b-head, %d sequences: decode %.3g; states after the prompts %.3g, after decode %.3g\n", kSeqs,
              decode_diff, prompt_state_diff, state_diff);
  CHECK(decode_diff <= kTol);
  CHECK(state_diff <= 4 * prompt_state_diff + kTol);
}

// The same grid with a bf16 state, where the CPU keeps fp32 states: before each step the CPU
// takes the GPU's states, and after it each state the GPU wrote, n and m included, must be the
// CPU's own step rounded to bf16 (bf16's unit roundoff, 2^-8, of each value at StateDiff's
// scale), where an n or m left unadvanced is off by the step's whole change. The normaliser
// runs on a side stream there (MlstmStep's nm_left); the second step has a new prompt beside the
// decode rows, whose blocks join the step's launch (MlstmStepBesideFresh).
TEST_CASE("7B-shaped heads with a bf16 state advance n and m in a decode grid of several waves") {
  constexpr int kSeqs = 64;
  auto weights = testing::SevenBHeadModel(9);
  const int vocab = weights->config.vocab_size;
  auto gpu = Cuda(weights, kSeqs, DType::kBF16, Precision::kExact);
  auto cpu = Cpu(weights, kSeqs, Precision::kExact);
  std::mt19937 rng(17);
  std::vector<std::vector<int32_t>> prompts;
  const std::vector<SequenceInput> batch = PromptsOnSlots(kSeqs, 5, vocab, rng, &prompts);
  ForwardOutput g, c;
  REQUIRE(gpu->Forward(batch, &g).ok());
  std::vector<float> st(gpu->state_layout().slot_floats());
  std::vector<int32_t> next(kSeqs);
  double decode_diff = 0, state_diff = 0;
  std::vector<int32_t> new_prompt(20);
  for (auto& t : new_prompt) t = static_cast<int32_t>(rng() % vocab);
  for (int step = 0; step < 3; ++step) {
    std::vector<SequenceInput> decode;
    for (int i = 0; i < kSeqs; ++i) {
      if (step == 1 && i == kSeqs - 1) {
        REQUIRE(gpu->ResetSlot(i).ok());
        REQUIRE(cpu->ResetSlot(i).ok());
        decode.push_back({i, new_prompt, true});
        continue;
      }
      REQUIRE(gpu->ReadSlot(i, st).ok());
      REQUIRE(cpu->WriteSlot(i, st).ok());
      next[i] = static_cast<int32_t>((step * 13 + i * 3) % vocab);
      decode.push_back({i, std::span<const int32_t>(&next[i], 1), false});
    }
    REQUIRE(gpu->Forward(decode, &g).ok());
    REQUIRE(cpu->Forward(decode, &c).ok());
    decode_diff = std::max(decode_diff, MaxAbsDiff(g.logits, c.logits));
    state_diff = std::max(state_diff, StateDiff(*gpu, *cpu, batch));
  }
  std::printf("7b-head, %d sequences, bf16 state: decode %.3g; states after each step %.3g\n", kSeqs, decode_diff,
              state_diff);
  CHECK(decode_diff <= kTol);
  CHECK(state_diff <= 1.0 / 256 + kTol);
}

// Prompts of 9 to 192 rows take the weight GEMMs of StreamGemm's range, where warm-up timing
// usually gives the FFN's up projection the SwiGLU epilogue (the bits of the epilogue itself are
// cuda_stream_gemm_test's); here the pass around it: the activation's own buffer, the down
// projection reading it, the interleaved rows and bias. A slip there moves logits by their own
// scale; the bound is CompareWithCpu's, over all of the test's prompts.
TEST_CASE("a wide-FFN model in the bf16 precision agrees with the CPU reference at StreamGemm's row counts") {
  auto weights = testing::SevenBHeadModel(5, 17.5);
  auto gpu = Cuda(weights, 1, DType::kF32, Precision::kBf16);
  auto cpu = Cpu(weights, 1, Precision::kBf16);
  auto cpu_exact = Cpu(weights, 1, Precision::kExact);
  std::mt19937 rng(3);
  double diff = 0, effect = 0;
  for (int len : {12, 40, 64, 100, 150, 192}) {
    std::vector<int32_t> prompt(len);
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % weights->config.vocab_size);
    const SequenceInput in{0, prompt, true};
    ForwardOutput g, c, e;
    for (Backend* b : {gpu.get(), cpu.get(), cpu_exact.get()}) REQUIRE(b->ResetSlot(0).ok());
    REQUIRE(gpu->Forward(std::span<const SequenceInput>(&in, 1), &g).ok());
    REQUIRE(cpu->Forward(std::span<const SequenceInput>(&in, 1), &c).ok());
    REQUIRE(cpu_exact->Forward(std::span<const SequenceInput>(&in, 1), &e).ok());
    const double d = MaxAbsDiff(g.logits, c.logits), x = MaxAbsDiff(c.logits, e.logits);
    double scale = 0;
    for (float v : c.logits) scale = std::max(scale, double(std::fabs(v)));
    std::printf("wide FFN, %3d tokens: cuda vs cpu (bf16) %.3g, bf16 vs exact (cpu) %.3g, largest |logit| %.3g\n", len,
                d, x, scale);
    diff = std::max(diff, d);
    effect = std::max(effect, x);
  }
  CHECK(diff <= kTol + kShareOfBf16Effect * effect);
}

TEST_CASE("a reset slot forgets its previous sequence, and other slots are never touched") {
  auto weights = LoadModelWeights("tests/golden/models/f32_base");
  REQUIRE(weights.ok());
  for (DType state : {DType::kF32, DType::kBF16}) {
    auto gpu = Cuda(*weights, 3, state);
    const std::vector<int32_t> a = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    const std::vector<int32_t> b = {40, 41};
    SequenceInput sa{0, a, false}, sb{0, b, false};
    ForwardOutput first, after, fresh;
    REQUIRE(gpu->Forward(std::span<const SequenceInput>(&sb, 1), &first).ok());
    REQUIRE(gpu->ResetSlot(0).ok());
    REQUIRE(gpu->Forward(std::span<const SequenceInput>(&sa, 1), &after).ok());
    REQUIRE(gpu->ResetSlot(0).ok());
    REQUIRE(gpu->Forward(std::span<const SequenceInput>(&sb, 1), &fresh).ok());
    CHECK(first.logits == fresh.logits);
    // Slot 2 runs a batch beside slot 0; slot 1 is never named and stays zero.
    SequenceInput pair[2] = {{0, b, false}, {2, a, false}};
    ForwardOutput both;
    REQUIRE(gpu->Forward(pair, &both).ok());
    std::vector<float> st(gpu->state_layout().slot_floats());
    REQUIRE(gpu->ReadSlot(1, st).ok());
    for (float v : st) REQUIRE(v == 0.0f);
    // A state written and read back is unchanged (exactly, for values representable in the
    // state's type).
    REQUIRE(gpu->ReadSlot(2, st).ok());
    REQUIRE(gpu->WriteSlot(1, st).ok());
    std::vector<float> back(st.size());
    REQUIRE(gpu->ReadSlot(1, back).ok());
    CHECK(back == st);
  }
}

TEST_CASE("the CUDA backend reports bad slots and bad options as errors") {
  auto weights = LoadModelWeights("tests/golden/models/f32_base");
  REQUIRE(weights.ok());
  auto gpu = Cuda(*weights, 2);
  std::vector<float> st(gpu->state_layout().slot_floats());
  CHECK(gpu->ReadSlot(2, st).code() == absl::StatusCode::kOutOfRange);
  CHECK(gpu->WriteSlot(0, std::span<const float>(st.data(), 3)).code() == absl::StatusCode::kInvalidArgument);
  kernels::CudaBackendOptions options;
  options.state_dtype = DType::kF16;
  CHECK(kernels::CreateCudaBackend(*weights, options).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("the GPU argmax of every row matches the logits, and argmax-only calls skip the logits") {
  auto weights = LoadModelWeights("tests/golden/models/bf16_base");
  REQUIRE(weights.ok());
  auto gpu = Cuda(*weights, 2);
  const std::vector<int32_t> a = {5, 6, 7, 8, 9}, b = {40, 41};
  std::vector<SequenceInput> batch = {{0, a, true}, {1, b, false}};
  ForwardOutput full;
  REQUIRE(gpu->Forward(batch, &full).ok());
  REQUIRE(full.argmax.size() == 6);
  for (int r = 0; r < 6; ++r) CHECK(full.argmax[r] == Argmax(full.Row(r)));
  // The same tokens from the same states, without the logits.
  REQUIRE(gpu->ResetSlot(0).ok());
  REQUIRE(gpu->ResetSlot(1).ok());
  for (auto& s : batch) s.tokens_only = true;
  ForwardOutput lean;
  REQUIRE(gpu->Forward(batch, &lean).ok());
  CHECK(lean.logits.empty());
  CHECK(lean.argmax == full.argmax);
}

TEST_CASE("greedy decode steps replayed as CUDA graphs match eager steps and touch no other slot") {
  auto weights = LoadModelWeights("tests/golden/models/bf16_base");
  REQUIRE(weights.ok());
  for (auto [state, precision] : {std::pair{DType::kF32, Precision::kExact}, std::pair{DType::kBF16, Precision::kExact},
                                  std::pair{DType::kF32, Precision::kBf16}}) {
    INFO("state " << StateName(state) << " precision " << std::string(PrecisionName(precision)));
    // Slots 0..2 decode (a bucket of 4 with one padding row); 3 and 4 stay empty.
    auto graphed = Cuda(*weights, 5, state, precision);
    auto eager = Cuda(*weights, 5, state, precision);
    std::vector<std::vector<int32_t>> tokens = {{5, 6, 7}, {40, 41}, {9}};
    for (Backend* b : {graphed.get(), eager.get()}) {
      std::vector<SequenceInput> prefill;
      for (int i = 0; i < 3; ++i) prefill.push_back({i, tokens[i], false});
      ForwardOutput out;
      REQUIRE(b->Forward(prefill, &out).ok());
    }
    std::vector<int32_t> next = {11, 12, 13};
    for (int step = 0; step < 6; ++step) {  // eager, captured, then replayed
      std::vector<SequenceInput> g, e;
      for (int i = 0; i < 3; ++i) {
        g.push_back({i, std::span<const int32_t>(&next[i], 1), false});
        g.back().tokens_only = true;
        e.push_back({i, std::span<const int32_t>(&next[i], 1), false});
      }
      ForwardOutput go, eo;
      REQUIRE(graphed->Forward(g, &go).ok());
      REQUIRE(eager->Forward(e, &eo).ok());
      REQUIRE(go.argmax.size() == 3);
      CHECK(go.row_offset == eo.row_offset);
      CHECK(go.argmax == eo.argmax);
      for (int i = 0; i < 3; ++i) next[i] = eo.argmax[i];
    }
    std::vector<float> a(graphed->state_layout().slot_floats()), b(a.size());
    for (int slot = 0; slot < 5; ++slot) {
      REQUIRE(graphed->ReadSlot(slot, a).ok());
      REQUIRE(eager->ReadSlot(slot, b).ok());
      INFO("slot " << slot);
      CHECK(a == b);
    }
    for (float v : a) REQUIRE(v == 0.0f);  // slot 4 was never named
  }
}

}  // namespace
}  // namespace xlserve
