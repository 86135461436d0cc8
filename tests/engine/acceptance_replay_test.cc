// Replayed acceptance (bench --acceptance): the decoder keeps exactly the drafts a trace says
// through a real backend and commits what it emitted; traces round-trip and bad ones are
// refused with a clear status.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "engine/batch_decoder.h"
#include "engine/model/testing/safetensors_writer.h"
#include "engine/speculative/acceptance_trace.h"
#include "engine/testing/fake_backend.h"
#include "tests/engine/cpu_test_backend.h"
#include "tests/engine/speculation_checks.h"

namespace xlserve {
namespace {

using testing::MakeMtpModel;
using testing::MaxRelDiff;
using testing::RandomPrompt;

GenerationRequest GreedyRequest(const std::vector<int32_t>& prompt, SpeculationMode mode, int max_new) {
  GenerationRequest request;
  request.prompt_ids = prompt;
  request.max_new_tokens = max_new;
  request.speculation = mode;
  request.num_draft = 3;
  return request;
}

// Prefills `request` into `slot` and adds it to `decoder`.
int AddPrefilled(Backend* backend, BatchDecoder* decoder, int slot, const GenerationRequest& request) {
  SequenceInput in;
  in.slot = slot;
  in.tokens = request.prompt_ids;
  in.mtp_heads = decoder->SpeculationEnabled(request);
  ForwardOutput out;
  REQUIRE(backend->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  auto id = decoder->Add(slot, request, out, 0);
  REQUIRE(id.ok());
  return *id;
}

// A source that keeps script[i] drafts (at most k) at its i-th call, recording what it said.
struct ScriptedAcceptance {
  std::vector<int> script;
  std::vector<std::pair<int, int>> calls;  // (drafts, kept)

  BatchDecoder::AcceptanceSource Source() {
    return [this](int drafts) -> absl::StatusOr<int> {
      const int kept = std::min(script[calls.size() % script.size()], drafts);
      calls.emplace_back(drafts, kept);
      return kept;
    };
  }
};

std::vector<float> ReadState(const Backend& backend, int slot) {
  std::vector<float> state(backend.state_layout().slot_floats());
  REQUIRE(backend.ReadSlot(slot, state).ok());
  return state;
}

TEST_CASE("replay keeps exactly the scripted drafts on the CPU backend and commits what it emitted") {
  // Random heads: real judging would reject nearly every draft.
  auto backend = testing::MakeTestCpuBackend(MakeMtpModel(MtpHeadType::kMlstmBlock, false, 7), 2);
  const std::vector<int32_t> prompt = RandomPrompt(11, 4);
  ScriptedAcceptance scripted{{3, 0, 2, 1, 3, 3, 0}};
  BatchDecoder decoder(backend.get());
  decoder.SetAcceptanceSource(scripted.Source());
  const int id = AddPrefilled(backend.get(), &decoder, 0, GreedyRequest(prompt, SpeculationMode::kOn, 40));
  size_t emitted = decoder.result(id).tokens.size();
  int drafted = 0, kept = 0;  // what the script drafted and kept before max_new_tokens
  while (decoder.has_unfinished()) {
    const size_t calls = scripted.calls.size();
    const int left = 40 - static_cast<int>(emitted);
    REQUIRE(decoder.Step().ok());
    const size_t now = decoder.result(id).tokens.size();
    REQUIRE(scripted.calls.size() == calls + 1);
    const auto [k, a] = scripted.calls.back();
    // The kept drafts and the trunk's token after them, unless the step reached max_new_tokens.
    if (!decoder.finished(id)) CHECK(now - emitted == size_t(a) + 1);
    drafted += std::min(k, left);
    kept += std::min(a, left);
    emitted = now;
  }
  const GenerationResult result = decoder.Remove(id);
  CHECK(result.tokens.size() == 40);
  CHECK(result.drafted_tokens == drafted);
  CHECK(result.accepted_drafts == kept);
  CHECK(kept > result.steps);  // far beyond what these heads would get accepted

  // The state took every emitted token but the last (still pending): stepping them one by one
  // on another slot gives the same state.
  std::vector<int32_t> history = prompt;
  history.insert(history.end(), result.tokens.begin(), result.tokens.end() - 1);
  SequenceInput in{1, history, false, true, false};
  ForwardOutput out;
  REQUIRE(backend->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  CHECK(MaxRelDiff(ReadState(*backend, 0), ReadState(*backend, 1)) < 1e-4);
}

TEST_CASE("replay commits the kept drafts plus one token at every step") {
  testing::FakeBackend backend(testing::FakeBackendOptions{64, 4});
  REQUIRE(backend.AllocateSlots(1).ok());
  ScriptedAcceptance scripted{{0, 3, 1, 2}};
  BatchDecoder decoder(&backend);
  decoder.SetAcceptanceSource(scripted.Source());
  const std::vector<int32_t> prompt = {5, 9, 11};
  const int id = AddPrefilled(&backend, &decoder, 0, GreedyRequest(prompt, SpeculationMode::kOn, 30));
  while (decoder.has_unfinished()) {
    REQUIRE(decoder.Step().ok());
    // Everything emitted but the pending token is in the state, so each step committed kept + 1.
    const std::vector<int32_t>& tokens = decoder.result(id).tokens;
    std::vector<int32_t> committed = prompt;
    committed.insert(committed.end(), tokens.begin(), tokens.end() - 1);
    CHECK(backend.seen(0) == committed);
  }
  // The fake's heads draft right: the replay, not the judge, rejected the zeros.
  const GenerationResult result = decoder.Remove(id);
  CHECK(result.tokens == backend.Greedy(prompt, 30));
  CHECK(result.accepted_drafts < result.drafted_tokens);
}

TEST_CASE("replay refuses sampled requests and out-of-range answers") {
  auto backend = testing::MakeTestCpuBackend(MakeMtpModel(MtpHeadType::kMlstmBlock, false, 7), 1);
  BatchDecoder decoder(backend.get());
  decoder.SetAcceptanceSource([](int drafts) -> absl::StatusOr<int> { return drafts + 1; });
  GenerationRequest sampled = GreedyRequest(RandomPrompt(5, 1), SpeculationMode::kOn, 8);
  sampled.sampling.temperature = 0.8f;
  SequenceInput in{0, sampled.prompt_ids, false, true, false};
  ForwardOutput out;
  REQUIRE(backend->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  const absl::StatusOr<int> refused = decoder.Add(0, sampled, out, 0);
  CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(refused.status().message()).find("greedy") != std::string::npos);

  REQUIRE(backend->ResetSlot(0).ok());
  AddPrefilled(backend.get(), &decoder, 0, GreedyRequest(sampled.prompt_ids, SpeculationMode::kOn, 8));
  CHECK(decoder.Step().code() == absl::StatusCode::kInternal);
}

TEST_CASE("without a source the decoder judges drafts as before and counts each verify") {
  auto backend = testing::MakeTestCpuBackend(MakeMtpModel(MtpHeadType::kMlstmBlock, true, 5), 1);
  const std::vector<int32_t> prompt = RandomPrompt(9, 3);
  const GenerationResult plain = testing::GenerateWith(backend.get(), prompt, SpeculationMode::kOff, 0, 40);
  const GenerationResult spec = testing::GenerateWith(backend.get(), prompt, SpeculationMode::kOn, 3, 40);
  CHECK(spec.tokens == plain.tokens);
  CHECK(spec.accepted_drafts > 0);
  int64_t drafted = 0, kept = 0;
  for (const auto& [k, counts] : spec.acceptance.by_draft_length) {
    for (int a = 0; a <= k; ++a) {
      drafted += counts[a] * k;
      kept += counts[a] * a;
    }
  }
  // Only a verify cut short by max_new_tokens is left out of the counts.
  CHECK(drafted <= spec.drafted_tokens);
  CHECK(drafted >= spec.drafted_tokens - 3);
  CHECK(kept <= spec.accepted_drafts);
}

TEST_CASE("a recorded trace round-trips through its file and replays deterministically") {
  auto backend = testing::MakeTestCpuBackend(MakeMtpModel(MtpHeadType::kMlstmBlock, true, 5), 1);
  AcceptanceTrace trace;
  trace.model = "copied heads";
  trace.num_draft = 3;
  for (uint32_t p = 0; p < 3; ++p) {
    trace.counts.Add(testing::GenerateWith(backend.get(), RandomPrompt(9, 30 + p), SpeculationMode::kOn, 3, 40)
                         .acceptance);
  }
  const std::string path = testing::MakeTempDir("trace") + "/trace.json";
  REQUIRE(WriteAcceptanceTrace(path, trace).ok());
  const absl::StatusOr<AcceptanceTrace> read = ReadAcceptanceTrace(path);
  REQUIRE(read.ok());
  CHECK(read->model == trace.model);
  CHECK(read->num_draft == 3);
  CHECK(read->counts == trace.counts);
  CHECK(ConditionalAcceptanceRates(*read) == ConditionalAcceptanceRates(trace));

  auto a = ReplayedAcceptance::Create(*read, 9);
  auto b = ReplayedAcceptance::Create(*read, 9);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  for (int i = 0; i < 200; ++i) {
    const int k = 1 + i % 3;
    const absl::StatusOr<int> x = a->Draw(k), y = b->Draw(k);
    REQUIRE(x.ok());
    CHECK(*x == *y);
    CHECK((*x >= 0 && *x <= k));
  }
  CHECK(a->Draw(4).status().code() == absl::StatusCode::kOutOfRange);
}

TEST_CASE("replayed draws follow the recorded counts of the shipped model") {
  const absl::StatusOr<AcceptanceTrace> trace = ReadAcceptanceTrace("tests/engine/testdata/xlstm_code_mtp_acceptance.json");
  REQUIRE(trace.ok());
  REQUIRE(trace->num_draft == 3);
  const std::vector<int64_t>& counts = trace->counts.by_draft_length.at(3);
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  auto replay = ReplayedAcceptance::Create(*trace, 1);
  REQUIRE(replay.ok());
  std::vector<int> drawn(4, 0);
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) ++drawn[*replay->Draw(3)];
  for (int a = 0; a <= 3; ++a) CHECK(std::abs(drawn[a] / double(kDraws) - counts[a] / total) < 0.02);
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

TEST_CASE("bad trace files give a clear status") {
  const std::string dir = testing::MakeTempDir("bad_trace");
  const absl::StatusOr<AcceptanceTrace> missing = ReadAcceptanceTrace(dir + "/none.json");
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(std::string(missing.status().message()).find("none.json") != std::string::npos);

  const auto error_of = [&](const std::string& text) {
    WriteFile(dir + "/t.json", text);
    const absl::StatusOr<AcceptanceTrace> read = ReadAcceptanceTrace(dir + "/t.json");
    CHECK(read.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(read.status().message());
  };
  CHECK(error_of("{ not json").find("not valid JSON") != std::string::npos);
  CHECK(error_of("[1, 2]").find("not a JSON object") != std::string::npos);
  CHECK(error_of(R"({"verifies": {}})").find("num_draft") != std::string::npos);
  CHECK(error_of(R"({"num_draft": 3, "verifies": {"4": [1, 1, 1, 1, 1]}})").find("k = 4 > num_draft 3") !=
        std::string::npos);
  CHECK(error_of(R"({"num_draft": 3, "verifies": {"2": [1, 1]}})").find("array of 3 counts") != std::string::npos);
  CHECK(error_of(R"({"num_draft": 3, "verifies": {"x": [1, 1]}})").find("key 'x'") != std::string::npos);
  CHECK(error_of(R"({"num_draft": 3, "verifies": {"1": [1, -2]}})").find("integers >= 0") != std::string::npos);

  AcceptanceTrace short_only;
  short_only.num_draft = 3;
  short_only.counts.Record(1, 1);
  CHECK(ReplayedAcceptance::Create(short_only, 1).status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace xlserve
