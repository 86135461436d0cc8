// Reads the golden cases that tools/golden/make_model_golden.py recorded from transformers, and
// for bf16 checkpoints what transformers computes in bf16 (tools/golden/make_bf16_golden.py).
#pragma once

#include <span>
#include <string>
#include <vector>

namespace xlserve::testing {

struct GoldenPrompt {
  std::vector<int> prompt_ids;
  std::vector<float> last_logits;
  std::vector<int> greedy_tokens;
  double min_greedy_margin = 0;
  std::vector<float> greedy_margins;  // per greedy step: top-1 minus top-2 logit (bf16 data only)
};

struct GoldenCase {
  std::string name;
  std::string dir;  // the model directory (config.json, weights, golden.json)
  std::string weights_dtype;
  std::vector<GoldenPrompt> prompts;
  // golden_bf16.json, when the case has one: the same prompts through transformers in bf16.
  std::vector<GoldenPrompt> bf16_prompts;
};

// max |a - b| over equally long arrays; infinity when their lengths differ or a difference is NaN.
double MaxAbsDiff(std::span<const float> a, std::span<const float> b);

// Every case under tests/golden/models/, sorted by name. Fails the calling test on a
// malformed golden.json (the files are ours, so that is a bug, not an input error).
std::vector<GoldenCase> LoadGoldenCases();

}  // namespace xlserve::testing
