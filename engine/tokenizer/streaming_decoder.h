// Incremental detokenization for streamed generation: Push one id at a time and get back only
// complete UTF-8 characters; bytes of a character split across tokens are held until it
// completes. The concatenation of every Push result and the final Flush equals
// Tokenizer::Decode of all ids pushed (with the same skip_special).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace xlserve {

class StreamingDecoder {
 public:
  // `tokenizer` is borrowed and must outlive the decoder.
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  // Text that became complete with `id` (possibly empty). An invalid id is an error and leaves
  // the decoder unchanged.
  absl::StatusOr<std::string> Push(int id);

  // Emits whatever is held back (an unfinished character becomes U+FFFD) and resets the decoder.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of an unfinished trailing character
};

}  // namespace xlserve
