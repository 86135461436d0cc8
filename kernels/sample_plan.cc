#include "kernels/sample_plan.h"

namespace xlserve::kernels {

void SamplePlan::Reset(int vocab) {
  rows_.clear();
  penalties_.clear();
  // Add() leaves every entry at -1, so only a new vocabulary size needs a fill.
  if (entry_of_.size() != static_cast<size_t>(vocab)) entry_of_.assign(static_cast<size_t>(vocab), -1);
}

PenaltyEntry& SamplePlan::EntryOf(int32_t token) {
  int32_t& at = entry_of_[token];
  if (at < 0) {
    at = static_cast<int32_t>(penalties_.size());
    penalties_.push_back({token, 0});
  }
  return penalties_[at];
}

void SamplePlan::Add(const DeviceSampling& s, int32_t logits_row) {
  const SamplingParams& p = s.params;
  SampleRowSpec row{};
  row.logits_row = logits_row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.repetition_penalty = p.repetition_penalty;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  row.seed = p.seed;
  row.draw_index = s.draw_index;
  const size_t begin = penalties_.size();
  // The repetition penalty reaches prompt and output tokens, presence and frequency only
  // tokens of the output.
  if (p.repetition_penalty != 1.0f) {
    for (int32_t t : s.history.prompt) EntryOf(t);
  }
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (int32_t t : s.history.generated) ++EntryOf(t).generated;
  }
  for (size_t e = begin; e < penalties_.size(); ++e) entry_of_[penalties_[e].token] = -1;
  row.penalty_begin = static_cast<int32_t>(begin);
  row.penalty_count = static_cast<int32_t>(penalties_.size() - begin);
  rows_.push_back(row);
}

}  // namespace xlserve::kernels
