// The requests of one load-test run: synthetic prompts of drawn lengths, or lines of a JSONL
// dataset. Generation is a pure function of the options (seeded), so runs are reproducible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loadtest/length_dist.h"

namespace xlserve::loadtest {

// One request to send. Exactly one of `prompt` and `prompt_token_ids` is set.
struct WorkloadRequest {
  std::string prompt;
  std::vector<int> prompt_token_ids;
  int max_tokens = 16;
  std::string session_id;  // continue this session's state (xlserve extension); empty: none
};

enum class PromptKind { kText, kTokenIds };

struct WorkloadOptions {
  int count = 1;
  LengthDist prompt_tokens = LengthDist::Fixed(32);
  LengthDist max_tokens = LengthDist::Fixed(16);
  PromptKind kind = PromptKind::kText;
  int vocab_size = 0;  // token ids are drawn from [1, vocab_size); needed for kTokenIds
  uint64_t seed = 0;
};

// Synthetic requests: text prompts have prompt_tokens words of code-like text (about one token
// each); token-id prompts have exactly prompt_tokens uniform ids.
absl::StatusOr<std::vector<WorkloadRequest>> GenerateWorkload(const WorkloadOptions& options);

// Reads `path`, one JSON object per line: {"prompt": "text" | [ids...], "max_tokens": n,
// "session_id": "..."} (max_tokens optional: drawn from `options.max_tokens` instead;
// session_id optional: successive lines of one session are its turns, in file order). Blank lines are skipped.
// Returns `options.count` requests, cycling through the file when it is shorter; errors name
// the file and line.
absl::StatusOr<std::vector<WorkloadRequest>> LoadDatasetWorkload(const std::string& path,
                                                                 const WorkloadOptions& options);

}  // namespace xlserve::loadtest
