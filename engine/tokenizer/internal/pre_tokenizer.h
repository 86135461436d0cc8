// Pre-tokenizers from tokenizer.json: ByteLevel, Split, Digits and Sequence of them. Each turns a
// list of pieces (raw UTF-8 bytes of the input) into a finer list; BPE then encodes every piece.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace xlserve::tokenizer_internal {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;

  // Replaces `pieces` by their refinement. Pieces are valid UTF-8; empty pieces are dropped.
  virtual absl::Status Apply(std::vector<std::string>* pieces) const = 0;

  // Whether the chain maps bytes to the byte-level alphabet (holds a ByteLevel step).
  virtual bool IsByteLevel() const = 0;
};

// Builds the pre-tokenizer described by tokenizer.json's "pre_tokenizer" value (which must not be
// null: a byte-level BPE needs a ByteLevel step). Unknown types fail with an error naming them.
absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const nlohmann::json& config);

}  // namespace xlserve::tokenizer_internal
