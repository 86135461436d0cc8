#include "engine/tokenizer/streaming_decoder.h"

#include "engine/tokenizer/internal/utf8.h"
#include "base/status_macros.h"

namespace xlserve {

absl::StatusOr<std::string> StreamingDecoder::Push(int id) {
  std::string bytes = pending_;
  RETURN_IF_ERROR(tokenizer_.AppendTokenBytes(id, skip_special_, &bytes));
  // Everything up to an unfinished trailing sequence decodes the same now as it would with more
  // bytes after it: a lead byte always ends the previous (valid or invalid) sequence.
  const std::size_t keep = tokenizer_internal::IncompleteUtf8TailLength(bytes);
  std::string text;
  tokenizer_internal::AppendLossyUtf8(std::string_view(bytes).substr(0, bytes.size() - keep),
                                      &text);
  pending_ = bytes.substr(bytes.size() - keep);
  return text;
}

std::string StreamingDecoder::Flush() {
  std::string text;
  tokenizer_internal::AppendLossyUtf8(pending_, &text);
  pending_.clear();
  return text;
}

}  // namespace xlserve
