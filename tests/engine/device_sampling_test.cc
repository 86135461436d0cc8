// BatchDecoder's device-sampling path (Backend::SamplesOnDevice) on the CPU. A test backend
// keeps DeviceSampling's contract with the host Sampler (draw `draw_index` of the seed's
// stream) and drops the logits like the CUDA backend; decoding through it must give every
// request exactly the tokens of the host path, which proves the decoder's side: which
// sequences ask, the draw index it passes, the draw it skips afterwards and the row it reads.
// The CUDA kernel itself is checked against Sampler in tests/gpu/cuda_sampling_test.cc.
#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "engine/backend_validation.h"
#include "engine/batch_decoder.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "engine/sampling/sampler.h"
#include "engine/state_cache.h"
#include "base/status_macros.h"
#include "tests/engine/speculation_checks.h"

namespace xlserve {
namespace {

using testing::MakeMtpModel;
using testing::RandomPrompt;

constexpr int kVocab = 256;

class HostSamplingBackend final : public Backend {
 public:
  explicit HostSamplingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}

  std::string_view name() const override { return "cpu with host sampling"; }
  const StateLayout& state_layout() const override { return inner_->state_layout(); }
  absl::Status AllocateSlots(int num_slots) override { return inner_->AllocateSlots(num_slots); }
  int num_slots() const override { return inner_->num_slots(); }
  absl::Status ResetSlot(int slot) override { return inner_->ResetSlot(slot); }
  absl::Status Commit(std::span<const CommitInput> commits) override { return inner_->Commit(commits); }
  bool SupportsSpeculation() const override { return inner_->SupportsSpeculation(); }
  bool SamplesOnDevice() const override { return true; }
  int num_mtp_heads() const override { return inner_->num_mtp_heads(); }
  int64_t snapshot_bytes() const override { return inner_->snapshot_bytes(); }
  absl::Status AllocateSnapshots(int device, int host) override { return inner_->AllocateSnapshots(device, host); }
  absl::Status SaveSnapshot(int slot, SnapshotRef dst) override { return inner_->SaveSnapshot(slot, dst); }
  absl::Status RestoreSnapshot(SnapshotRef src, int slot) override { return inner_->RestoreSnapshot(src, slot); }
  absl::Status CopySnapshot(SnapshotRef src, SnapshotRef dst) override { return inner_->CopySnapshot(src, dst); }
  absl::Status ReadSlot(int slot, std::span<float> out) const override { return inner_->ReadSlot(slot, out); }
  absl::Status WriteSlot(int slot, std::span<const float> in) override { return inner_->WriteSlot(slot, in); }

  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override {
    // The sampling checks here; the CPU backend checks the rest again.
    RETURN_IF_ERROR(ValidateForwardBatch(batch, num_slots(), kVocab, true, true, true));
    std::vector<SequenceInput> plain(batch.begin(), batch.end());
    bool tokens_only = true;
    for (SequenceInput& s : plain) {
      tokens_only = tokens_only && s.tokens_only;
      s.sample = nullptr;
    }
    RETURN_IF_ERROR(inner_->Forward(plain, out));
    out->sampled.assign(batch.size(), -1);
    for (size_t i = 0; i < batch.size(); ++i) {
      const DeviceSampling* d = batch[i].sample;
      if (d == nullptr) continue;
      ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(d->params));
      sampler.SkipDraws(d->draw_index);
      const absl::StatusOr<int32_t> token = sampler.Sample(out->LastRow(static_cast<int>(i)), d->history);
      if (token.ok() && !no_usable_logit_) out->sampled[i] = *token;  // else -1, as on the GPU
      ++samples_;
    }
    // Like the CUDA backend: the decoder must not need the rows of sampled sequences.
    if (tokens_only) {
      out->logits.clear();
      out->mtp_logits.clear();
    }
    return absl::OkStatus();
  }

  int samples() const { return samples_; }
  // Makes every sampled row look like one without a usable logit.
  void set_no_usable_logit(bool on) { no_usable_logit_ = on; }

 private:
  std::unique_ptr<Backend> inner_;
  int samples_ = 0;
  bool no_usable_logit_ = false;
};

std::unique_ptr<Backend> Cpu(std::shared_ptr<const ModelWeights> weights, int slots) {
  CpuBackendOptions options;
  options.num_threads = 2;
  auto backend = CpuBackend::Create(std::move(weights), options);
  REQUIRE(backend.ok());
  REQUIRE((*backend)->AllocateSlots(slots).ok());
  return std::move(*backend);
}

std::unique_ptr<HostSamplingBackend> WithHostSampling(std::shared_ptr<const ModelWeights> weights, int slots) {
  return std::make_unique<HostSamplingBackend>(Cpu(std::move(weights), slots));
}

GenerationResult Generate(Backend* backend, const GenerationRequest& request) {
  auto cache = StateCache::Create(backend, 1);
  REQUIRE(cache.ok());
  Generator generator(backend, &*cache);
  auto result = generator.Generate(request);
  INFO(result.status().message());
  REQUIRE(result.ok());
  return *result;
}

// Seeded sampling settings covering each stage of the sampler, greedy with penalties (no draw)
// and plain greedy (the argmax path, for mixing).
std::vector<SamplingParams> Settings() {
  std::vector<SamplingParams> all;
  const auto add = [&all](float t, int k, float p, float min_p, float rep, float presence, float frequency) {
    SamplingParams s;
    s.temperature = t;
    s.top_k = k;
    s.top_p = p;
    s.min_p = min_p;
    s.repetition_penalty = rep;
    s.presence_penalty = presence;
    s.frequency_penalty = frequency;
    s.seed = 1000 + all.size();
    all.push_back(s);
  };
  add(0.8f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
  add(1.0f, 5, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
  add(0.7f, 0, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f);
  add(1.3f, 0, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f);
  add(0.9f, 40, 0.8f, 0.02f, 1.3f, 0.4f, 0.3f);
  add(1e-3f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
  add(5.0f, 0, 0.5f, 0.0f, 0.8f, -0.5f, 0.0f);
  add(0.0f, 0, 1.0f, 0.0f, 1.5f, 0.0f, 0.5f);  // greedy with penalties
  add(0.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);  // plain greedy
  return all;
}

GenerationRequest Request(const SamplingParams& params, int index) {
  GenerationRequest r;
  r.prompt_ids = RandomPrompt(3 + 4 * index, 500 + index);
  r.max_new_tokens = 24;
  r.sampling = params;
  return r;
}

bool DeviceEligible(const GenerationRequest& r) {
  const Sampler sampler = *Sampler::Create(r.sampling);
  return !sampler.plain_greedy() && !r.token_logits && r.speculation == SpeculationMode::kOff;
}

TEST_CASE("device sampling in the decoder gives the tokens of host sampling, request by request") {
  auto weights = MakeMtpModel(MtpHeadType::kMlstmBlock, false, 31, kVocab);
  auto host = Cpu(weights, 1);
  auto device = WithHostSampling(weights, 1);
  const std::vector<SamplingParams> settings = Settings();
  int expected_samples = 0;
  for (size_t i = 0; i < settings.size(); ++i) {
    INFO("setting " << i);
    const GenerationRequest r = Request(settings[i], static_cast<int>(i));
    const GenerationResult want = Generate(host.get(), r);
    const GenerationResult got = Generate(device.get(), r);
    CHECK(got.tokens == want.tokens);
    // The first token comes from the prefill's logits on the host; every later one was sampled
    // by the backend, except plain greedy, which stays on the argmax path.
    if (DeviceEligible(r)) expected_samples += static_cast<int>(got.tokens.size()) - 1;
  }
  CHECK(device->samples() == expected_samples);
  CHECK(expected_samples > 100);
}

TEST_CASE("one batch of device-sampled, host-sampled, speculative and greedy sequences matches each alone") {
  auto weights = MakeMtpModel(MtpHeadType::kMlstmBlock, false, 37, kVocab);
  auto host = Cpu(weights, 1);
  std::vector<GenerationRequest> requests;
  for (const SamplingParams& s : Settings()) requests.push_back(Request(s, static_cast<int>(requests.size())));
  GenerationRequest logprobs = Request(Settings()[4], 20);  // needs rows on the host
  logprobs.token_logits = true;
  requests.push_back(logprobs);
  GenerationRequest speculative = Request(Settings()[2], 21);  // judges drafts on the host
  speculative.speculation = SpeculationMode::kOn;
  speculative.num_draft = 2;
  requests.push_back(speculative);
  requests.back().max_new_tokens = 17;
  requests[3].max_new_tokens = 9;  // sequences finish at different steps

  const int n = static_cast<int>(requests.size());
  auto device = WithHostSampling(weights, n);
  BatchDecoder decoder(device.get());
  std::vector<int> ids;
  std::vector<int> empty_rows(n, 0);
  for (int i = 0; i < n; ++i) {
    SequenceInput s;
    s.slot = i;
    s.tokens = requests[i].prompt_ids;
    s.mtp_heads = decoder.SpeculationEnabled(requests[i]);
    ForwardOutput prefill;
    REQUIRE(device->Forward(std::span<const SequenceInput>(&s, 1), &prefill).ok());
    auto id = decoder.Add(i, requests[i], prefill, 0,
                          [&empty_rows, i](int32_t, std::span<const float> logits) { empty_rows[i] += logits.empty(); });
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  while (decoder.has_unfinished()) REQUIRE(decoder.Step().ok());
  int expected_samples = 0;
  for (int i = 0; i < n; ++i) {
    INFO("sequence " << i);
    const GenerationResult batched = decoder.Remove(ids[i]);
    CHECK(batched.speculative == (requests[i].speculation == SpeculationMode::kOn));
    CHECK(batched.tokens == Generate(host.get(), requests[i]).tokens);
    if (DeviceEligible(requests[i])) expected_samples += static_cast<int>(batched.tokens.size()) - 1;
    // The batch always holds a logprobs sequence (until it finishes), so rows come back.
    if (requests[i].token_logits) CHECK(empty_rows[i] == 0);
  }
  CHECK(device->samples() == expected_samples);
}

TEST_CASE("a sampled row without a usable logit is an error of the step, not a token") {
  auto device = WithHostSampling(MakeMtpModel(MtpHeadType::kMlstmBlock, false, 41, kVocab), 1);
  BatchDecoder decoder(device.get());
  const GenerationRequest r = Request(Settings()[0], 0);
  SequenceInput s;
  s.slot = 0;
  s.tokens = r.prompt_ids;
  ForwardOutput prefill;
  REQUIRE(device->Forward(std::span<const SequenceInput>(&s, 1), &prefill).ok());
  REQUIRE(decoder.Add(0, r, prefill, 0).ok());
  device->set_no_usable_logit(true);
  const absl::Status st = decoder.Step();
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(st.message().find("no usable logit") != std::string::npos);
}

TEST_CASE("Forward checks SequenceInput::sample before running anything") {
  auto weights = MakeMtpModel(MtpHeadType::kMlstmBlock, false, 43, kVocab);
  const std::vector<int32_t> prompt = RandomPrompt(5, 1);
  DeviceSampling sampling;
  sampling.params.temperature = 1.0f;
  sampling.history.prompt = prompt;
  SequenceInput s;
  s.slot = 0;
  s.tokens = prompt;
  s.sample = &sampling;
  ForwardOutput out;

  auto cpu = Cpu(weights, 1);
  const absl::Status unsupported = cpu->Forward(std::span<const SequenceInput>(&s, 1), &out);
  CHECK(unsupported.code() == absl::StatusCode::kUnimplemented);

  auto device = WithHostSampling(weights, 1);
  std::vector<float> before(device->state_layout().slot_floats());
  REQUIRE(device->ReadSlot(0, before).ok());
  const std::vector<int32_t> bad = {4, kVocab};
  sampling.history.generated = bad;
  const absl::Status bad_id = device->Forward(std::span<const SequenceInput>(&s, 1), &out);
  CHECK(bad_id.code() == absl::StatusCode::kInvalidArgument);
  CHECK(bad_id.message() == "token history: generated[1] = 256 is outside the vocabulary [0, 256)");
  sampling.history.generated = {};
  sampling.params.top_p = 0.0f;
  CHECK(device->Forward(std::span<const SequenceInput>(&s, 1), &out).code() == absl::StatusCode::kInvalidArgument);
  std::vector<float> after(before.size());
  REQUIRE(device->ReadSlot(0, after).ok());
  CHECK(after == before);  // rejected before the state moved
}

}  // namespace
}  // namespace xlserve
