// Sampling on the GPU (kernels/sample_rows.cu, Backend::SamplesOnDevice) against the CPU
// reference Sampler, token for token: crafted rows through the kernel (ties, -0 and +0, NaN,
// infinities, rows without a usable logit, vocabularies of 1 to 50304), rows that the CUDA
// backend returns next to its sampled tokens, and whole seeded decodes with the device path
// against the host path. Every comparison is exact: the kernel differs from the CPU only in the
// order of double sums, which changes a token only within ~1e-15 relative of a threshold
// (engine/sampling/distribution.h). Tagged "gpu": run on a CUDA machine (README "GPU tests
// and benchmarks").
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/batch_decoder.h"
#include "engine/generator.h"
#include "engine/model/model_weights.h"
#include "engine/sampling/sampler.h"
#include "engine/state_cache.h"
#include "kernels/launchers.h"
#include "kernels/sample_plan.h"
#include "tests/engine/speculation_checks.h"
#include "tests/gpu/gpu_test_support.h"

namespace xlserve {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int kLargeVocab = 50304;  // xLSTM-7B's

// Sampler::Sample on `row` with the stream at d.draw_index; -1 for a row without a usable logit.
int32_t HostToken(const DeviceSampling& d, std::span<const float> row) {
  auto sampler = Sampler::Create(d.params);
  REQUIRE(sampler.ok());
  sampler->SkipDraws(d.draw_index);
  const absl::StatusOr<int32_t> token = sampler->Sample(row, d.history);
  if (!token.ok()) {
    INFO(token.status().message());
    REQUIRE(token.status().message().find("no usable logit") != std::string::npos);
    return -1;
  }
  return *token;
}

// A random setting from the grid below and a history that repeats tokens.
struct RandomCase {
  std::vector<int32_t> prompt, generated;
  DeviceSampling sampling;  // history: views of prompt and generated, set by BindHistories
};

// Points each case's history at its own ids (after the vector stopped growing).
void BindHistories(std::vector<RandomCase>& cases) {
  for (RandomCase& c : cases) c.sampling.history = {c.prompt, c.generated};
}

RandomCase MakeCase(std::mt19937_64& rng, int vocab) {
  const auto pick = [&rng](auto options) { return options[rng() % options.size()]; };
  RandomCase c;
  SamplingParams& p = c.sampling.params;
  p.temperature = pick(std::vector<float>{0.0f, 1e-3f, 0.05f, 0.3f, 0.7f, 1.0f, 1.5f, 5.0f, 100.0f});
  p.top_k = pick(std::vector<int>{0, 0, 1, 5, 50, vocab - 1, vocab + 3});
  p.top_p = pick(std::vector<float>{1.0f, 1.0f, 0.9f, 0.5f, 0.01f});
  p.min_p = pick(std::vector<float>{0.0f, 0.0f, 0.0f, 0.05f, 0.3f, 1.0f});
  p.repetition_penalty = pick(std::vector<float>{1.0f, 1.0f, 1.3f, 0.7f});
  p.presence_penalty = pick(std::vector<float>{0.0f, 0.0f, 0.5f, -0.4f});
  p.frequency_penalty = pick(std::vector<float>{0.0f, 0.0f, 0.3f, 1.5f});
  p.seed = rng();
  c.sampling.draw_index = rng() % 3 == 0 ? rng() : rng() % 1000;
  // Few distinct ids, so that histories repeat tokens and prompt and output overlap.
  const int distinct = 1 + static_cast<int>(rng() % std::min(vocab, 24));
  const int base = static_cast<int>(rng() % (vocab - distinct + 1));
  c.prompt.resize(rng() % 40);
  c.generated.resize(rng() % 40);
  for (auto* ids : {&c.prompt, &c.generated}) {
    for (int32_t& t : *ids) t = base + static_cast<int32_t>(rng() % distinct);
  }
  return c;
}

// A crafted row: normal logits of random scale, or coarse values with many ties, -0 and +0,
// NaN and infinities, or nothing usable.
std::vector<float> MakeRow(std::mt19937_64& rng, int vocab) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row(vocab);
  const int kind = static_cast<int>(rng() % 6);
  const float scale = std::vector<float>{0.5f, 3.0f, 20.0f}[rng() % 3];
  for (float& x : row) x = normal(rng) * scale;
  switch (kind) {
    case 1:  // ties: halves between -4 and 4
      for (float& x : row) x = std::round(std::clamp(normal(rng), -2.0f, 2.0f) * 2.0f) / 2.0f;
      break;
    case 2:  // the maximum is zero, as -0 and +0
      for (float& x : row) x = (rng() % 3 == 0) ? ((rng() % 2) ? 0.0f : -0.0f) : -std::fabs(x) - 1e-3f;
      break;
    case 3:  // NaN and -inf scattered, sometimes +inf maxima
      for (float& x : row) {
        if (rng() % 8 == 0) x = kNaN;
        if (rng() % 8 == 0) x = -kInf;
      }
      if (rng() % 2) row[rng() % vocab] = row[rng() % vocab] = kInf;
      break;
    case 4:  // nothing usable
      for (float& x : row) x = (rng() % 2) ? kNaN : -kInf;
      break;
    case 5:  // huge magnitudes: differences overflow to -inf
      for (float& x : row) x = (rng() % 2 ? 1.0f : -1.0f) * 3e38f * std::fabs(normal(rng)) / 4.0f;
      break;
    default:
      break;
  }
  return row;
}

// A device buffer for the kernel-level test.
template <typename T>
struct DeviceArray {
  explicit DeviceArray(size_t n) : count(std::max<size_t>(n, 1)) {
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&ptr), count * sizeof(T)) == cudaSuccess);
  }
  ~DeviceArray() { cudaFree(ptr); }
  void Upload(const std::vector<T>& host) {
    if (!host.empty()) REQUIRE(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  T* ptr = nullptr;
  size_t count;
};

// Runs SampleRows over `rows` (all of `vocab` logits) for `cases`; returns the tokens.
std::vector<int32_t> SampleOnGpu(const std::vector<std::vector<float>>& rows, const std::vector<RandomCase>& cases,
                                 int vocab, float* elapsed_ms = nullptr, int repeats = 1) {
  kernels::SamplePlan plan;
  plan.Reset(vocab);
  std::vector<float> logits;
  for (size_t r = 0; r < rows.size(); ++r) {
    logits.insert(logits.end(), rows[r].begin(), rows[r].end());
    plan.Add(cases[r].sampling, static_cast<int32_t>(r));
  }
  const size_t n = rows.size();
  DeviceArray<float> d_logits(logits.size()), penalised(n * vocab);
  DeviceArray<double> weights(n * vocab);
  DeviceArray<kernels::SampleRowSpec> specs(n);
  DeviceArray<kernels::PenaltyEntry> penalties(plan.penalties().size());
  DeviceArray<int32_t> tokens(n);
  d_logits.Upload(logits);
  specs.Upload(plan.rows());
  penalties.Upload(plan.penalties());
  const kernels::SampleRowsParams p{d_logits.ptr, vocab,         specs.ptr,     static_cast<int>(n), penalties.ptr,
                                    penalised.ptr, weights.ptr, tokens.ptr};
  cudaEvent_t start, stop;
  REQUIRE(cudaEventCreate(&start) == cudaSuccess);
  REQUIRE(cudaEventCreate(&stop) == cudaSuccess);
  REQUIRE(kernels::SampleRows(p, nullptr) == cudaSuccess);  // warm-up
  REQUIRE(cudaEventRecord(start) == cudaSuccess);
  for (int i = 0; i < repeats; ++i) REQUIRE(kernels::SampleRows(p, nullptr) == cudaSuccess);
  REQUIRE(cudaEventRecord(stop) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(stop) == cudaSuccess);
  float ms = 0;
  REQUIRE(cudaEventElapsedTime(&ms, start, stop) == cudaSuccess);
  if (elapsed_ms) *elapsed_ms = ms / repeats;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::vector<int32_t> out(n);
  REQUIRE(cudaMemcpy(out.data(), tokens.ptr, n * sizeof(int32_t), cudaMemcpyDeviceToHost) == cudaSuccess);
  return out;
}

TEST_CASE("the sampling kernel picks Sampler's token on crafted rows") {
  std::mt19937_64 rng(2024);
  int compared = 0, unusable = 0, greedy = 0;
  for (auto [vocab, count] : {std::pair{1, 20}, std::pair{7, 200}, std::pair{256, 400}, std::pair{1000, 300},
                              std::pair{kLargeVocab, 64}}) {
    std::vector<std::vector<float>> rows;
    std::vector<RandomCase> cases;
    for (int r = 0; r < count; ++r) {
      rows.push_back(MakeRow(rng, vocab));
      cases.push_back(MakeCase(rng, vocab));
    }
    BindHistories(cases);
    const std::vector<int32_t> gpu = SampleOnGpu(rows, cases, vocab);
    CHECK(SampleOnGpu(rows, cases, vocab) == gpu);  // deterministic
    for (int r = 0; r < count; ++r) {
      const SamplingParams& p = cases[r].sampling.params;
      INFO("vocab " << vocab << " row " << r << " T " << p.temperature << " top_k " << p.top_k << " top_p "
                    << p.top_p << " min_p " << p.min_p << " penalties " << p.repetition_penalty << " "
                    << p.presence_penalty << " " << p.frequency_penalty << " draw " << cases[r].sampling.draw_index);
      const int32_t want = HostToken(cases[r].sampling, rows[r]);
      CHECK(gpu[r] == want);
      ++compared;
      unusable += want < 0;
      greedy += p.temperature == 0.0f;
    }
  }
  std::printf("sampling kernel: %d crafted rows equal to Sampler (%d without a usable logit, %d greedy)\n", compared,
              unusable, greedy);
  CHECK(unusable > 0);
}

TEST_CASE("the CUDA backend samples Sampler's token from the rows it returns") {
  struct Model {
    std::string name;
    std::shared_ptr<const ModelWeights> weights;
    int steps;
  };
  std::vector<Model> models;
  for (const char* name : {"f32_base", "bf16_base"}) {
    auto w = LoadModelWeights(std::string("tests/golden/models/") + name);
    REQUIRE(w.ok());
    models.push_back({name, *w, 60});
  }
  models.push_back({"random, vocabulary 50304",
                    testing::MakeMtpModel(MtpHeadType::kLinear, false, 5, kLargeVocab), 40});
  constexpr int kSeqs = 8;
  std::mt19937_64 rng(77);
  int compared = 0;
  for (const Model& m : models) {
    const int vocab = m.weights->config.vocab_size;
    auto gpu = testing::MakeCudaBackend(m.weights, kSeqs);
    for (int step = 0; step < m.steps; ++step) {
      std::vector<std::vector<int32_t>> tokens(kSeqs);
      std::vector<RandomCase> cases;
      std::vector<SequenceInput> batch(kSeqs);
      for (int i = 0; i < kSeqs; ++i) {
        cases.push_back(MakeCase(rng, vocab));
        tokens[i].resize(step == 0 ? 1 + rng() % 9 : 1 + (rng() % 4 == 0));
        for (int32_t& t : tokens[i]) t = static_cast<int32_t>(rng() % vocab);
      }
      BindHistories(cases);
      for (int i = 0; i < kSeqs; ++i) {
        batch[i].slot = i;
        batch[i].tokens = tokens[i];
        batch[i].all_logits = rng() % 4 == 0;
        if (i != 3) batch[i].sample = &cases[i].sampling;  // one sequence asks for nothing
      }
      ForwardOutput out;
      const absl::Status st = gpu->Forward(batch, &out);
      INFO(st.message());
      REQUIRE(st.ok());
      REQUIRE(out.sampled.size() == kSeqs);
      CHECK(out.sampled[3] == -1);
      for (int i = 0; i < kSeqs; ++i) {
        if (i == 3) continue;
        INFO(m.name << " step " << step << " sequence " << i);
        CHECK(out.sampled[i] == HostToken(cases[i].sampling, out.LastRow(i)));
        ++compared;
      }
    }
  }
  std::printf("cuda backend: %d sampled tokens equal to Sampler on the returned rows\n", compared);
  CHECK(compared >= 1000);
}

// Seeded settings covering each stage of the sampler, and greedy with penalties.
std::vector<SamplingParams> DecodeSettings() {
  std::vector<SamplingParams> all(8);
  all[0].temperature = 0.8f;
  all[1].temperature = 1.0f;
  all[1].top_k = 5;
  all[2].temperature = 0.7f;
  all[2].top_p = 0.9f;
  all[3].temperature = 1.3f;
  all[3].min_p = 0.05f;
  all[4].temperature = 0.9f;
  all[4].top_k = 40;
  all[4].top_p = 0.8f;
  all[4].min_p = 0.02f;
  all[4].repetition_penalty = 1.3f;
  all[4].presence_penalty = 0.4f;
  all[4].frequency_penalty = 0.3f;
  all[5].temperature = 1e-3f;
  all[6].temperature = 5.0f;
  all[6].top_p = 0.5f;
  all[6].presence_penalty = -0.5f;
  all[7].repetition_penalty = 1.5f;  // greedy with penalties
  all[7].frequency_penalty = 0.5f;
  for (size_t i = 0; i < all.size(); ++i) all[i].seed = 31 * i + 7;
  return all;
}

TEST_CASE("seeded decoding samples the same tokens on the GPU as on the host") {
  auto golden = LoadModelWeights("tests/golden/models/f32_base");
  REQUIRE(golden.ok());
  for (auto weights : {*golden, testing::MakeMtpModel(MtpHeadType::kLinear, false, 9, kLargeVocab)}) {
    const int vocab = weights->config.vocab_size;
    auto gpu = testing::MakeCudaBackend(weights, 4);
    REQUIRE(gpu->SamplesOnDevice());
    auto cache = StateCache::Create(gpu.get(), 4);
    REQUIRE(cache.ok());
    Generator generator(gpu.get(), &*cache);
    const std::vector<SamplingParams> settings = DecodeSettings();
    for (size_t i = 0; i < settings.size(); ++i) {
      INFO("vocab " << vocab << " setting " << i);
      GenerationRequest r;
      r.prompt_ids = {static_cast<int32_t>(i + 3), 17, static_cast<int32_t>((i * 37) % vocab), 17};
      r.max_new_tokens = 40;
      r.sampling = settings[i];
      auto device = generator.Generate(r);
      r.token_logits = true;  // the host path: logits to the host, Sampler there
      auto host = generator.Generate(r);
      REQUIRE(device.ok());
      REQUIRE(host.ok());
      CHECK(device->tokens == host->tokens);
    }

    // Four sequences in one batch (a power of two, so the graph of the device path pads nothing
    // and both paths run the same shapes), each to the same length.
    std::vector<std::vector<int32_t>> results[2];
    for (int path = 0; path < 2; ++path) {
      BatchDecoder decoder(gpu.get());
      std::vector<int> ids;
      for (int i = 0; i < 4; ++i) {
        GenerationRequest r;
        r.prompt_ids = {static_cast<int32_t>(5 + i), 9, 11};
        r.max_new_tokens = 24;
        r.sampling = settings[2 * i];
        r.token_logits = path == 1;
        SequenceInput s;
        s.slot = i;
        s.tokens = r.prompt_ids;
        ForwardOutput prefill;
        REQUIRE(gpu->ResetSlot(i).ok());
        REQUIRE(gpu->Forward(std::span<const SequenceInput>(&s, 1), &prefill).ok());
        auto id = decoder.Add(i, r, prefill, 0);
        REQUIRE(id.ok());
        ids.push_back(*id);
      }
      while (decoder.has_unfinished()) REQUIRE(decoder.Step().ok());
      for (int id : ids) results[path].push_back(decoder.Remove(id).tokens);
    }
    CHECK(results[0] == results[1]);
  }
}

TEST_CASE("a bad sampling request to the CUDA backend is INVALID_ARGUMENT and moves no state") {
  auto weights = LoadModelWeights("tests/golden/models/f32_base");
  REQUIRE(weights.ok());
  const int vocab = (*weights)->config.vocab_size;
  auto gpu = testing::MakeCudaBackend(*weights, 1);
  const std::vector<int32_t> prompt = {4, 5, 6};
  SequenceInput s;
  s.slot = 0;
  s.tokens = prompt;
  ForwardOutput out;
  REQUIRE(gpu->Forward(std::span<const SequenceInput>(&s, 1), &out).ok());
  std::vector<float> before(gpu->state_layout().slot_floats()), after(before.size());
  REQUIRE(gpu->ReadSlot(0, before).ok());

  DeviceSampling sampling;
  sampling.params.temperature = 1.0f;
  sampling.params.repetition_penalty = 1.2f;
  const std::vector<int32_t> bad_prompt = {4, -1};
  const std::vector<int32_t> bad_output = {vocab};
  sampling.history = {bad_prompt, {}};
  s.sample = &sampling;
  absl::Status st = gpu->Forward(std::span<const SequenceInput>(&s, 1), &out);
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(st.message().find("prompt[1] = -1") != std::string::npos);
  sampling.history = {prompt, bad_output};
  st = gpu->Forward(std::span<const SequenceInput>(&s, 1), &out);
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(st.message().find("outside the vocabulary") != std::string::npos);
  sampling.history = {prompt, {}};
  sampling.params.min_p = 2.0f;
  CHECK(gpu->Forward(std::span<const SequenceInput>(&s, 1), &out).code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(gpu->ReadSlot(0, after).ok());
  CHECK(after == before);
}

TEST_CASE("sampling kernel time on a 50304-token vocabulary (printed)") {
  std::mt19937_64 rng(5);
  struct Setting {
    const char* name;
    float t;
    int k;
    float p;
    float rep;
  };
  for (const Setting& set : {Setting{"temperature only", 1.0f, 0, 1.0f, 1.0f}, Setting{"top-k 50", 1.0f, 50, 1.0f, 1.0f},
                             Setting{"top-p 0.9", 0.7f, 0, 0.9f, 1.0f},
                             Setting{"top-k 50 + top-p 0.9 + penalties", 0.7f, 50, 0.9f, 1.2f},
                             Setting{"greedy + penalties", 0.0f, 0, 1.0f, 1.2f}}) {
    for (int rows : {1, 8, 64}) {
      std::vector<std::vector<float>> logits;
      std::vector<RandomCase> cases;
      std::normal_distribution<float> normal(0.0f, 3.0f);
      for (int r = 0; r < rows; ++r) {
        std::vector<float> row(kLargeVocab);
        for (float& x : row) x = normal(rng);
        logits.push_back(row);
        RandomCase c = MakeCase(rng, kLargeVocab);
        c.sampling.params = SamplingParams{};
        c.sampling.params.temperature = set.t;
        c.sampling.params.top_k = set.k;
        c.sampling.params.top_p = set.p;
        c.sampling.params.repetition_penalty = set.rep;
        cases.push_back(c);
      }
      BindHistories(cases);
      float ms = 0;
      SampleOnGpu(logits, cases, kLargeVocab, &ms, 20);
      std::printf("SampleRows vocab %d, %-34s rows %2d: %.1f us\n", kLargeVocab, set.name, rows, ms * 1e3);
    }
  }
}

}  // namespace
}  // namespace xlserve
