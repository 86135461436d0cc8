// Unicode Normalization Form C, as HF's NFC normalizer applies it before pre-tokenization
// (GPT-NeoX / xLSTM-7b and Qwen tokenizer.json files ask for it).
#pragma once

#include <string>
#include <string_view>

namespace xlserve::tokenizer_internal {

// NFC of valid UTF-8 `text`. Text without code points >= U+0300 is returned unchanged quickly.
std::string ToNfc(std::string_view text);

}  // namespace xlserve::tokenizer_internal
