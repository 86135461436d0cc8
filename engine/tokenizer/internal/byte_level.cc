#include "engine/tokenizer/internal/byte_level.h"

#include <array>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/internal/utf8.h"

namespace xlserve::tokenizer_internal {
namespace {

bool MapsToItself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

const std::array<char32_t, 256>& ByteTable() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = MapsToItself(b) ? static_cast<char32_t>(b) : next++;
    return t;
  }();
  return table;
}

}  // namespace

char32_t ByteToChar(unsigned char b) { return ByteTable()[b]; }

int CharToByte(char32_t c) {
  if (c < 256) return MapsToItself(static_cast<int>(c)) ? static_cast<int>(c) : -1;
  static const std::unordered_map<char32_t, int> inverse = [] {
    std::unordered_map<char32_t, int> m;
    for (int b = 0; b < 256; ++b) {
      if (!MapsToItself(b)) m[ByteTable()[b]] = b;
    }
    return m;
  }();
  const auto it = inverse.find(c);
  return it == inverse.end() ? -1 : it->second;
}

std::string BytesToVocabString(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) AppendUtf8(ByteToChar(b), &out);
  return out;
}

std::string VocabStringToBytes(std::string_view token) {
  std::vector<char32_t> chars;
  if (!DecodeUtf8(token, &chars, nullptr).ok()) return std::string(token);
  std::string out;
  out.reserve(chars.size());
  for (char32_t c : chars) {
    const int b = CharToByte(c);
    if (b < 0) return std::string(token);
    out.push_back(static_cast<char>(b));
  }
  return out;
}

}  // namespace xlserve::tokenizer_internal
