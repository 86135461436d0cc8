// UTF-8 helpers for the tokenizer: strict decoding of input text, and the lossy decoding that
// HF's byte-level decoder applies to token bytes (Rust's String::from_utf8_lossy: every maximal
// invalid subpart becomes one U+FFFD).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace xlserve::tokenizer_internal {

// Decodes `text` into code points; `offsets` (if non-null) receives the byte offset of each code
// point plus a final entry equal to text.size(). Fails on invalid UTF-8, naming the byte offset.
absl::Status DecodeUtf8(std::string_view text, std::vector<char32_t>* code_points,
                        std::vector<std::uint32_t>* offsets);

void AppendUtf8(char32_t c, std::string* out);

// Appends `bytes` to `out`, replacing each maximal invalid subpart with U+FFFD.
void AppendLossyUtf8(std::string_view bytes, std::string* out);

// Length of the trailing bytes of `bytes` that start a valid UTF-8 sequence which is not yet
// complete (0 to 3). Those bytes may still become a character when more bytes arrive.
std::size_t IncompleteUtf8TailLength(std::string_view bytes);

}  // namespace xlserve::tokenizer_internal
