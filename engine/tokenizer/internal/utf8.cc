#include "engine/tokenizer/internal/utf8.h"

#include "absl/strings/str_cat.h"

namespace xlserve::tokenizer_internal {
namespace {

enum class SequenceKind { kValid, kInvalid, kTruncated };

struct Sequence {
  SequenceKind kind;
  std::size_t length;  // bytes consumed: the character, the maximal invalid subpart, or the tail
  char32_t code_point;
};

// Reads one sequence at the start of `s` (non-empty), following the Unicode "maximal subpart"
// rule so that a bad sequence never swallows a byte that could start the next character.
Sequence ReadSequence(std::string_view s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {SequenceKind::kValid, 1, lead};
  std::size_t need;
  unsigned char second_lo = 0x80, second_hi = 0xBF;
  char32_t value;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 2;
    value = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 3;
    value = lead & 0x0F;
    if (lead == 0xE0) second_lo = 0xA0;  // overlong
    if (lead == 0xED) second_hi = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 4;
    value = lead & 0x07;
    if (lead == 0xF0) second_lo = 0x90;  // overlong
    if (lead == 0xF4) second_hi = 0x8F;  // beyond U+10FFFF
  } else {
    return {SequenceKind::kInvalid, 1, 0};
  }
  for (std::size_t i = 1; i < need; ++i) {
    if (i >= s.size()) return {SequenceKind::kTruncated, i, 0};
    const unsigned char b = byte(i);
    const unsigned char lo = i == 1 ? second_lo : 0x80;
    const unsigned char hi = i == 1 ? second_hi : 0xBF;
    if (b < lo || b > hi) return {SequenceKind::kInvalid, i, 0};
    value = (value << 6) | (b & 0x3F);
  }
  return {SequenceKind::kValid, need, value};
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

}  // namespace

absl::Status DecodeUtf8(std::string_view text, std::vector<char32_t>* code_points,
                        std::vector<std::uint32_t>* offsets) {
  code_points->clear();
  if (offsets != nullptr) offsets->clear();
  std::size_t pos = 0;
  while (pos < text.size()) {
    const Sequence seq = ReadSequence(text.substr(pos));
    if (seq.kind != SequenceKind::kValid) {
      return absl::InvalidArgumentError(
          absl::StrCat("text is not valid UTF-8 (bad byte sequence at byte offset ", pos, ")"));
    }
    code_points->push_back(seq.code_point);
    if (offsets != nullptr) offsets->push_back(static_cast<std::uint32_t>(pos));
    pos += seq.length;
  }
  if (offsets != nullptr) offsets->push_back(static_cast<std::uint32_t>(text.size()));
  return absl::OkStatus();
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

void AppendLossyUtf8(std::string_view bytes, std::string* out) {
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const Sequence seq = ReadSequence(bytes.substr(pos));
    if (seq.kind == SequenceKind::kValid) {
      out->append(bytes.substr(pos, seq.length));
    } else {
      out->append(kReplacement);
    }
    pos += seq.length;
  }
}

std::size_t IncompleteUtf8TailLength(std::string_view bytes) {
  // A sequence is at most 4 bytes, so an incomplete one starts within the last 3.
  const std::size_t window = bytes.size() < 3 ? bytes.size() : 3;
  for (std::size_t len = window; len >= 1; --len) {
    const Sequence seq = ReadSequence(bytes.substr(bytes.size() - len));
    if (seq.kind == SequenceKind::kTruncated && seq.length == len) return len;
  }
  return 0;
}

}  // namespace xlserve::tokenizer_internal
