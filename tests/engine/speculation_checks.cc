#include "tests/engine/speculation_checks.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>
#include <string>

#include "engine/batch_decoder.h"
#include "engine/model/testing/safetensors_writer.h"
#include "engine/state_cache.h"

namespace xlserve::testing {
namespace {

ModelConfig MakeMtpConfig(MtpHeadType type) {
  ModelConfig c;
  c.vocab_size = 96;
  c.hidden_size = 32;
  c.num_blocks = 2;
  c.num_heads = 2;
  c.ffn_proj_factor = 2.0;
  c.ffn_round_up_to_multiple_of = 16;
  c.bos_token_id = 0;
  c.pad_token_id = 1;
  c.eos_token_ids = {2};
  MtpConfig mtp;
  mtp.num_heads = 4;
  mtp.head_type = type;
  mtp.trunk_layers = type == MtpHeadType::kMlstmBlock ? c.num_blocks - 1 : c.num_blocks;
  c.mtp = mtp;
  return c;
}

}  // namespace

std::shared_ptr<const ModelWeights> MakeMtpModel(MtpHeadType type, bool heads_copy_last_block, uint32_t seed,
                                                 int vocab) {
  ModelConfig config = MakeMtpConfig(type);
  config.vocab_size = vocab;
  // Tied embeddings make a random model favour repeating its input, so copied heads draft well.
  config.tie_word_embeddings = heads_copy_last_block;
  std::vector<NamedTensor> tensors = RandomModelTensors(config, seed);
  const std::string last = "backbone.blocks." + std::to_string(config.num_blocks - 1) + ".";
  std::map<std::string, std::vector<float>> last_block;
  for (const auto& t : tensors) {
    if (t.name.rfind(last, 0) == 0) last_block[t.name.substr(last.size())] = t.values;
  }
  for (auto& t : tensors) {
    if (t.name == "backbone.embeddings.weight") {
      for (float& v : t.values) v *= 6.0f;
    }
    if (t.name == "lm_head.weight") {
      for (float& v : t.values) v *= 3.0f;
    }
    if (heads_copy_last_block && t.name.rfind("mtp_heads.", 0) == 0) {
      const std::string rest = t.name.substr(t.name.find('.', 10) + 1);
      if (last_block.count(rest)) t.values = last_block[rest];
    }
  }
  const std::string dir = MakeTempDir("spec");
  REQUIRE(WriteModelDirectory(dir, config, tensors).ok());
  auto weights = LoadModelWeights(dir);
  REQUIRE(weights.ok());
  return *weights;
}

std::vector<int32_t> RandomPrompt(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(3, 95);
  std::vector<int32_t> p(n);
  for (int32_t& t : p) t = dist(rng);
  return p;
}

GenerationResult GenerateWith(Backend* backend, const std::vector<int32_t>& prompt, SpeculationMode mode, int k,
                              int max_new, float temperature, uint64_t seed) {
  auto cache = StateCache::Create(backend, 1);
  REQUIRE(cache.ok());
  Generator generator(backend, &*cache);
  GenerationRequest request;
  request.prompt_ids = prompt;
  request.max_new_tokens = max_new;
  request.speculation = mode;
  request.num_draft = k;
  request.sampling.temperature = temperature;
  request.sampling.seed = seed;
  auto result = generator.Generate(request);
  REQUIRE(result.ok());
  return *result;
}

double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / (1.0 + std::fabs(double(b[i]))));
  }
  return worst;
}

void CheckGreedySpeculationIsLossless(const BackendFactory& make) {
  int total_accepted = 0, total_steps = 0, total_tokens = 0;
  for (MtpHeadType type : {MtpHeadType::kMlstmBlock, MtpHeadType::kLinear}) {
    for (bool copy : {false, true}) {
      if (type == MtpHeadType::kLinear && copy) continue;
      auto backend = make(MakeMtpModel(type, copy, 11), 1);
      for (int p = 0; p < 6; ++p) {
        const std::vector<int32_t> prompt = RandomPrompt(1 + 7 * p, 100 + p);
        const GenerationResult plain = GenerateWith(backend.get(), prompt, SpeculationMode::kOff, 0);
        REQUIRE_FALSE(plain.speculative);
        for (auto [mode, k] : {std::pair{SpeculationMode::kOn, 1}, std::pair{SpeculationMode::kOn, 3},
                               std::pair{SpeculationMode::kAuto, 3}}) {
          INFO("head type " << int(type) << " copy " << copy << " prompt " << p << " k " << k);
          const GenerationResult spec = GenerateWith(backend.get(), prompt, mode, k);
          REQUIRE(spec.speculative);
          CHECK(spec.tokens == plain.tokens);
          CHECK(spec.accepted_drafts <= spec.drafted_tokens);
          if (copy && mode == SpeculationMode::kOn && k == 3) {
            total_accepted += spec.accepted_drafts;
            total_steps += spec.steps;
            total_tokens += static_cast<int>(spec.tokens.size());
          }
        }
      }
    }
  }
  // The copied heads must have produced accepted runs, or the multi-token paths went untested.
  INFO("accepted " << total_accepted << " in " << total_steps << " steps");
  CHECK(total_accepted > 20);
  CHECK(total_steps < total_tokens);
}

void CheckMixedBatchMatchesAlone(const BackendFactory& make) {
  auto weights = MakeMtpModel(MtpHeadType::kMlstmBlock, true, 17);
  constexpr int kSeqs = 6;
  auto backend = make(weights, kSeqs);
  BatchDecoder decoder(backend.get());
  std::vector<GenerationRequest> requests(kSeqs);
  std::vector<int> ids;
  for (int i = 0; i < kSeqs; ++i) {
    GenerationRequest& r = requests[i];
    r.prompt_ids = RandomPrompt(2 + 5 * i, 300 + i);
    r.max_new_tokens = 10 + 7 * i;
    r.speculation = i % 3 == 0 ? SpeculationMode::kOff : (i % 3 == 1 ? SpeculationMode::kOn : SpeculationMode::kAuto);
    r.num_draft = 1 + i % 3;
    SequenceInput s{i, r.prompt_ids, false, decoder.SpeculationEnabled(r), false};
    ForwardOutput out;
    REQUIRE(backend->Forward(std::span<const SequenceInput>(&s, 1), &out).ok());
    auto id = decoder.Add(i, r, out, 0);
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  int passes = 0;
  while (decoder.has_unfinished()) {
    REQUIRE(decoder.Step().ok());
    ++passes;
  }
  int accepted = 0;
  for (int i = 0; i < kSeqs; ++i) {
    INFO("sequence " << i);
    const GenerationResult batched = decoder.Remove(ids[i]);
    const GenerationResult alone = GenerateWith(backend.get(), requests[i].prompt_ids, SpeculationMode::kOff, 0,
                                       requests[i].max_new_tokens);
    CHECK(batched.tokens == alone.tokens);
    accepted += batched.accepted_drafts;
  }
  CHECK(accepted > 0);
  CHECK(passes < 10 + 7 * (kSeqs - 1));  // the longest sequence needed fewer passes than tokens
}

void CheckDeferredCommitEqualsStepping(const BackendFactory& make, double tol) {
  auto weights = MakeMtpModel(MtpHeadType::kMlstmBlock, false, 21);
  const std::vector<int32_t> prompt = RandomPrompt(13, 8);
  const std::vector<int32_t> verify = RandomPrompt(5, 9);
  for (int a = 0; a <= static_cast<int>(verify.size()); ++a) {
    INFO("commit " << a);
    auto spec = make(weights, 1);
    auto step = make(weights, 1);
    ForwardOutput out;
    for (Backend* b : {static_cast<Backend*>(spec.get()), static_cast<Backend*>(step.get())}) {
      SequenceInput s{0, prompt, false, true, false};
      REQUIRE(b->Forward(std::span<const SequenceInput>(&s, 1), &out).ok());
    }
    std::vector<float> before(spec->state_layout().slot_floats());
    REQUIRE(spec->ReadSlot(0, before).ok());

    SequenceInput v{0, verify, true, true, true};
    ForwardOutput verified;
    REQUIRE(spec->Forward(std::span<const SequenceInput>(&v, 1), &verified).ok());
    std::vector<float> untouched(before.size());
    REQUIRE(spec->ReadSlot(0, untouched).ok());
    REQUIRE(untouched == before);  // verification wrote no state

    const CommitInput commit{0, a};
    REQUIRE(spec->Commit(std::span<const CommitInput>(&commit, 1)).ok());
    for (int t = 0; t < a; ++t) {
      SequenceInput s{0, std::span<const int32_t>(&verify[t], 1), false, true, false};
      REQUIRE(step->Forward(std::span<const SequenceInput>(&s, 1), &out).ok());
      // The verify pass's row t is what stepping gives after the same tokens.
      std::vector<float> row(verified.Row(t).begin(), verified.Row(t).end());
      std::vector<float> stepped(out.LastRow(0).begin(), out.LastRow(0).end());
      CHECK(MaxRelDiff(row, stepped) < tol);
      for (int head = 1; head <= verified.num_mtp_heads; ++head) {
        std::vector<float> vh(verified.MtpRow(t, head).begin(), verified.MtpRow(t, head).end());
        std::vector<float> sh(out.MtpRow(0, head).begin(), out.MtpRow(0, head).end());
        CHECK(MaxRelDiff(vh, sh) < tol);
      }
    }
    std::vector<float> committed(before.size()), stepped(before.size());
    REQUIRE(spec->ReadSlot(0, committed).ok());
    REQUIRE(step->ReadSlot(0, stepped).ok());
    // One rank-a update against a sequential steps in fp32: same maths, other rounding order.
    CHECK(MaxRelDiff(committed, stepped) < tol);
  }
}

void CheckSpeculativeSamplingDistribution(const BackendFactory& make) {
  // Vocabulary of 8 so a few thousand seeded runs fill every cell of the histograms.
  auto backend = make(MakeMtpModel(MtpHeadType::kMlstmBlock, true, 31, 8), 1);
  const std::vector<int32_t> prompt = {3, 5, 4};
  constexpr int kRuns = 3000;
  constexpr int kTokens = 4;
  std::vector<std::vector<int>> plain(kTokens, std::vector<int>(8)), spec(kTokens, std::vector<int>(8));
  int accepted = 0;
  for (int r = 0; r < kRuns; ++r) {
    const GenerationResult a = GenerateWith(backend.get(), prompt, SpeculationMode::kOff, 0, kTokens, 1.0f, r);
    const GenerationResult b = GenerateWith(backend.get(), prompt, SpeculationMode::kOn, 3, kTokens, 1.0f, 50000 + r);
    REQUIRE(a.tokens.size() == kTokens);
    REQUIRE(b.tokens.size() == kTokens);
    accepted += b.accepted_drafts;
    for (int t = 0; t < kTokens; ++t) {
      ++plain[t][a.tokens[t]];
      ++spec[t][b.tokens[t]];
    }
  }
  CHECK(accepted > kRuns / 4);  // the acceptance test itself was exercised
  for (int t = 0; t < kTokens; ++t) {
    // Two-sample chi-square with equal sizes: sum (a - b)^2 / (a + b), 7 degrees of freedom;
    // 29.88 is its 1e-4 critical value. Seeds are fixed, so the outcome is deterministic.
    double chi2 = 0;
    for (int v = 0; v < 8; ++v) {
      if (plain[t][v] + spec[t][v] > 0) {
        chi2 += double(plain[t][v] - spec[t][v]) * (plain[t][v] - spec[t][v]) / (plain[t][v] + spec[t][v]);
      }
    }
    INFO("position " << t << " chi2 " << chi2);
    CHECK(chi2 < 29.88);
  }
}

}  // namespace xlserve::testing
