// The GPT-2 byte-level alphabet: every byte maps to one printable code point, so that BPE can work
// on arbitrary bytes while vocab entries stay valid Unicode strings. Printable Latin-1 bytes map to
// themselves; the rest (controls, space, DEL, NBSP, soft hyphen) map to U+0100 onwards in order.
#pragma once

#include <string>
#include <string_view>

namespace xlserve::tokenizer_internal {

char32_t ByteToChar(unsigned char b);

// The byte that `c` stands for, or -1 when `c` is outside the byte-level alphabet.
int CharToByte(char32_t c);

// UTF-8 of the byte-level characters for `bytes` (how vocab entries spell them).
std::string BytesToVocabString(std::string_view bytes);

// The bytes a vocab token stands for, as HF's ByteLevel decoder computes them: each character maps
// back to its byte, and a token holding any character outside the alphabet (an added token such as
// "<|endoftext|> " written with a real space) contributes its own UTF-8 bytes unchanged.
std::string VocabStringToBytes(std::string_view token);

}  // namespace xlserve::tokenizer_internal
