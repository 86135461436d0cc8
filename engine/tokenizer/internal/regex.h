// Regex: a pre-tokenizer pattern from tokenizer.json, compiled and matched by Oniguruma — the
// engine HF `tokenizers` runs, with the same syntax (ONIG_SYNTAX_DEFAULT) and Unicode tables —
// over UTF-8 bytes, so that \p{L}, \s, lookaheads and leftmost-first alternation behave as
// they do there.
//
// A Regex is immutable and safe to share between threads; copies share the compiled pattern.
// Text must be valid UTF-8 (Tokenizer::Encode checks before anything matches).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

struct re_pattern_buffer;  // Oniguruma's regex_t

namespace xlserve::tokenizer_internal {

class Regex {
 public:
  // INVALID_ARGUMENT with Oniguruma's message for a pattern it rejects.
  static absl::StatusOr<Regex> Compile(std::string_view pattern);

  // Byte ranges [begin, end) of the successive matches in `text`, as HF's find_iter reports
  // them: each search starts where the last match ended, and an empty match right at that
  // point is skipped by one character. RESOURCE_EXHAUSTED when a match backtracks past
  // Oniguruma's retry limit (a pathological pattern on adversarial text).
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  // The length in bytes of a match that starts exactly at byte `at` of `text`, or -1 when none
  // does. RESOURCE_EXHAUSTED as for FindAll.
  absl::StatusOr<int> MatchLengthAt(std::string_view text, size_t at) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex(std::string pattern, std::shared_ptr<re_pattern_buffer> compiled)
      : pattern_(std::move(pattern)), compiled_(std::move(compiled)) {}

  std::string pattern_;
  std::shared_ptr<re_pattern_buffer> compiled_;
};

}  // namespace xlserve::tokenizer_internal
