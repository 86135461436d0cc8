// Reads the golden cases that tools/golden/make_model_golden.py recorded from transformers.
#pragma once

#include <string>
#include <vector>

namespace xlserve::testing {

struct GoldenPrompt {
  std::vector<int> prompt_ids;
  std::vector<float> last_logits;
  std::vector<int> greedy_tokens;
  double min_greedy_margin = 0;
};

struct GoldenCase {
  std::string name;
  std::string dir;  // the model directory (config.json, weights, golden.json)
  std::string weights_dtype;
  std::vector<GoldenPrompt> prompts;
};

// Every case under tests/golden/models/, sorted by name. Fails the calling test on a
// malformed golden.json (the files are ours, so that is a bug, not an input error).
std::vector<GoldenCase> LoadGoldenCases();

}  // namespace xlserve::testing
