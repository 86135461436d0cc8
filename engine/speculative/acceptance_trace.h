// Acceptance traces: the drafts a model's MTP heads got accepted on real text, recorded by
// `xlserve bench --speculative --record-acceptance FILE`, and replayed where no trained heads
// exist (`bench --shape 7b --acceptance FILE`) to measure what speculation costs the system at
// that acceptance. A replay says nothing about output quality: it keeps drafts as the trace
// says, not as the model would.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/speculative/acceptance_counts.h"
#include "nlohmann/json.hpp"

namespace xlserve {

struct AcceptanceTrace {
  std::string model;  // where it was recorded
  int num_draft = 0;  // the fixed draft length of the recorded run; counts hold no longer one
  AcceptanceCounts counts;
};

// Per draft position j = 1..num_draft: how often draft j was kept when drafts 1..j-1 were,
// over every verify of at least j drafts (0 where no verify reached position j).
std::vector<double> ConditionalAcceptanceRates(const AcceptanceTrace& trace);

// The file's JSON: model, num_draft, "verifies" (k -> counts of 0..k kept) and the derived
// "conditional_acceptance" (informative; reading ignores it).
nlohmann::json AcceptanceTraceToJson(const AcceptanceTrace& trace);
absl::StatusOr<AcceptanceTrace> AcceptanceTraceFromJson(const nlohmann::json& j);

absl::Status WriteAcceptanceTrace(const std::string& path, const AcceptanceTrace& trace);
// Errors name the file and what is wrong with it.
absl::StatusOr<AcceptanceTrace> ReadAcceptanceTrace(const std::string& path);

// Draws, for a verify of k drafts, how many to keep: from the trace's counts for k, or, where
// the trace has none for k, from those of num_draft cut at k (greedy keeps draft j on drafts
// 1..j alone, so a verify of num_draft drafts also tells what its first k would have kept).
// Seeded: the same seed and calls give the same draws.
class ReplayedAcceptance {
 public:
  // Fails when the trace holds no verify of num_draft drafts.
  static absl::StatusOr<ReplayedAcceptance> Create(const AcceptanceTrace& trace, uint64_t seed);

  // 0..k; an error for k outside 1..num_draft.
  absl::StatusOr<int> Draw(int drafts);

 private:
  ReplayedAcceptance(std::vector<std::vector<int64_t>> counts, uint64_t seed);

  std::vector<std::vector<int64_t>> counts_;  // [k - 1][kept]
  std::mt19937_64 rng_;
};

}  // namespace xlserve
