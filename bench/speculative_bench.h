// Measures self-speculative decoding on real text: tokens per decode step and tokens/s with
// and without speculation, for several batch sizes, on any backend.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/speculative/acceptance_trace.h"
#include "nlohmann/json.hpp"

namespace xlserve::bench {

struct SpeculativeBenchOptions {
  // Token ids; batch b decodes prompts 0, 1, ... in rounds of b, at least `sequences` of them
  // (PromptsNeeded).
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> batch_sizes = {1, 8, 32};
  // Sequences decoded at each batch size at least: one text decides too much of a small batch's
  // figure, since acceptance varies from text to text.
  int sequences = 8;
  // Runs of each mode at each batch size, the modes taking turns; a row pools its mode's runs.
  int runs = 1;
  int new_tokens = 128;
  int num_draft = 3;
  // Set: speculative runs keep drafts as this trace says, not as the model does (a system-cost
  // measurement, for heads that cannot draft); every run replays the same seeded draws.
  std::optional<AcceptanceTrace> replayed_acceptance;
  uint64_t replay_seed = 1;
  // Set where the backend counts them (Accelerator::DecodeGraphBuilds): its graph builds so far.
  // A build inside a timed pass is one-time work that warm-up should have done.
  std::function<int64_t()> graph_builds;
};

struct SpeculativeBenchRow {
  int batch = 0;
  int runs = 0;              // pooled into this row
  int sequences = 0;         // decoded, in rounds of the batch size, over all runs
  std::string mode;          // "off", "on" or "auto"
  int64_t tokens = 0;        // generated, all sequences
  int64_t sequence_steps = 0;  // decode passes summed over sequences
  int64_t passes = 0;        // backend passes for the whole batch
  int64_t drafted = 0;
  int64_t accepted = 0;
  double decode_seconds = 0;  // the decode passes (drafting + plain); prefill excluded
  // The passes in which some sequence drafted, and the time of each kind of pass (the decoder's
  // host work included): `auto` pays for the passes it speculates before judging that plain
  // steps yield more, and its plain passes should cost what `off`'s do.
  int64_t drafting_passes = 0;
  double drafting_seconds = 0;
  double plain_seconds = 0;
  AcceptanceCounts acceptance;  // all sequences' complete verifies
  int64_t graph_builds = -1;    // inside the timed passes; -1 where the backend does not count them
  std::vector<double> run_tokens_per_second;  // each run's own, in order: the spread
  // Each run's tokens/s over the `off` run of the same turn, and their median: one slow stretch
  // of the machine moves the pooled speed-up, the median hardly.
  std::vector<double> run_speedups;
  double median_speedup = 0;

  int64_t plain_passes() const { return passes - drafting_passes; }

  double tokens_per_step() const { return sequence_steps ? double(tokens) / sequence_steps : 0; }
  double tokens_per_second() const { return decode_seconds > 0 ? tokens / decode_seconds : 0; }
};

// The prompts `options` decodes: the most rounds of any batch size times that size.
int PromptsNeeded(const SpeculativeBenchOptions& options);

// Greedy decoding of every batch size in every mode, after one warm-up per batch size; each round
// of a run starts from freshly prefilled prompts, one decoder (and what it learnt) across the
// rounds of a run, a new one per run. `backend` needs at least max(batch_sizes) slots' worth of
// memory.
absl::StatusOr<std::vector<SpeculativeBenchRow>> RunSpeculativeBench(Backend* backend,
                                                                     const SpeculativeBenchOptions& options);

// `count` prompts of `length` token ids drawn uniformly from [3, vocab) (past the usual special
// ids) with a fixed seed: for models with random weights, whose text would mean nothing.
std::vector<std::vector<int32_t>> RandomPrompts(int count, int length, int vocab, uint32_t seed);

// The acceptance of the `on` rows (a fixed draft length `num_draft`), as a trace of `model`.
AcceptanceTrace RecordedAcceptance(const std::vector<SpeculativeBenchRow>& rows, const std::string& model,
                                   int num_draft);

std::string FormatSpeculativeTable(const std::vector<SpeculativeBenchRow>& rows);
nlohmann::json SpeculativeRowsToJson(const std::vector<SpeculativeBenchRow>& rows);

}  // namespace xlserve::bench
