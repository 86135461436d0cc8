// Unicode Normalization Form C as HF's NFC normalizer applies it before pre-tokenization
// (GPT-NeoX / xLSTM-7b and Qwen tokenizer.json files ask for it), by ICU.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace xlserve::tokenizer_internal {

// NFC of valid UTF-8 `text`, with HF's Unicode version (characters assigned after Unicode 9.0
// stay as they are). Text without code points >= U+0300 is returned unchanged quickly.
// INTERNAL only when ICU's data cannot be loaded.
absl::StatusOr<std::string> ToNfc(std::string_view text);

}  // namespace xlserve::tokenizer_internal
