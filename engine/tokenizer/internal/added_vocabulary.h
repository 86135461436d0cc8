// Added tokens (special and not) from tokenizer.json's "added_tokens": they are cut out of the
// input before pre-tokenization and map straight to their ids, as in HF's AddedVocabulary.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace xlserve::tokenizer_internal {

struct AddedToken {
  std::string content;  // normalized when `normalized` and the tokenizer has a normalizer
  int id = 0;
  bool special = false;
  bool single_word = false;  // only match when not inside a word
  bool lstrip = false;       // absorb whitespace on the left
  bool rstrip = false;       // absorb whitespace on the right
  bool normalized = true;    // matched after normalization (second pass)
};

class AddedVocabulary {
 public:
  // `normalize` (may be null) is the tokenizer's normalizer; normalized tokens are kept, matched
  // and decoded in normalized form, as HF does.
  static absl::StatusOr<AddedVocabulary> FromJson(const nlohmann::json& added_tokens,
                                                  absl::StatusOr<std::string> (*normalize)(std::string_view));

  // A stretch of the input: either an added token (id >= 0) or text to pre-tokenize (id < 0).
  // `text` points into the string passed to Split.
  struct Segment {
    std::string_view text;
    int id;
  };

  // Appends segments covering `text` in order, cutting out the tokens of one pass. HF runs the
  // pass of non-normalized tokens over the raw text, then normalizes the remaining pieces and runs
  // the pass of normalized tokens over them. Matching is leftmost-longest and non-overlapping.
  void Split(std::string_view text, bool normalized_pass, std::vector<Segment>* segments) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  // Per pass (0: not normalized, 1: normalized) and first byte: indices into tokens_, longest
  // content first.
  std::vector<int> candidates_[2][256];
};

}  // namespace xlserve::tokenizer_internal
