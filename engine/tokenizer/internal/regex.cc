#include "engine/tokenizer/internal/regex.h"

#include <oniguruma.h>

#include <mutex>
#include <optional>

namespace xlserve::tokenizer_internal {
namespace {

const OnigUChar* Bytes(std::string_view s) { return reinterpret_cast<const OnigUChar*>(s.data()); }

std::string ErrorText(int code, OnigErrorInfo* info = nullptr) {
  OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
  const int length = info ? onig_error_code_to_str(message, code, info) : onig_error_code_to_str(message, code);
  return std::string(reinterpret_cast<const char*>(message), length > 0 ? length : 0);
}

// A search failure other than "no match": the retry limit (catastrophic backtracking) or an
// internal error.
absl::Status SearchError(int code) {
  if (code == ONIGERR_RETRY_LIMIT_IN_MATCH_OVER || code == ONIGERR_RETRY_LIMIT_IN_SEARCH_OVER ||
      code == ONIGERR_MATCH_STACK_LIMIT_OVER) {
    return absl::ResourceExhaustedError("pre-tokenizer pattern gave up on this text: " + ErrorText(code));
  }
  return absl::InternalError("pre-tokenizer pattern failed: " + ErrorText(code));
}

struct RegionDeleter {
  void operator()(OnigRegion* r) const { onig_region_free(r, 1); }
};
using Region = std::unique_ptr<OnigRegion, RegionDeleter>;

// Length of the UTF-8 character that starts with byte `lead` (valid text).
size_t CharLength(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

}  // namespace

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern) {
  static std::once_flag initialized;
  std::call_once(initialized, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
  OnigRegex compiled = nullptr;
  OnigErrorInfo info;
  const int code = onig_new(&compiled, Bytes(pattern), Bytes(pattern) + pattern.size(), ONIG_OPTION_NONE,
                            ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
  if (code != ONIG_NORMAL) {
    return absl::InvalidArgumentError("pattern " + std::string(pattern) + ": " + ErrorText(code, &info));
  }
  return Regex(std::string(pattern), std::shared_ptr<re_pattern_buffer>(compiled, onig_free));
}

absl::Status Regex::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const {
  matches->clear();
  Region region(onig_region_new());
  const OnigUChar* begin = Bytes(text);
  const OnigUChar* end = begin + text.size();
  size_t from = 0;
  std::optional<size_t> last_match_end;
  while (from <= text.size()) {
    const int found = onig_search(compiled_.get(), begin, end, begin + from, end, region.get(), ONIG_OPTION_NONE);
    if (found == ONIG_MISMATCH) break;
    if (found < 0) return SearchError(found);
    const size_t match_begin = static_cast<size_t>(region->beg[0]);
    const size_t match_end = static_cast<size_t>(region->end[0]);
    if (match_begin == match_end && last_match_end == match_end) {
      // Empty, right where the last match ended: try one character further on.
      from += from < text.size() ? CharLength(static_cast<unsigned char>(text[from])) : 1;
      continue;
    }
    matches->emplace_back(match_begin, match_end);
    from = match_end;
    last_match_end = match_end;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Regex::MatchLengthAt(std::string_view text, size_t at) const {
  const int length = onig_match(compiled_.get(), Bytes(text), Bytes(text) + text.size(), Bytes(text) + at, nullptr,
                                ONIG_OPTION_NONE);
  if (length == ONIG_MISMATCH) return -1;
  if (length < 0) return SearchError(length);
  return length;
}

}  // namespace xlserve::tokenizer_internal
