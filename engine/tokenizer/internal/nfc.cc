#include "engine/tokenizer/internal/nfc.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uniset.h>

#include <algorithm>
#include <memory>

namespace xlserve::tokenizer_internal {
namespace {

// HF tokenizers normalizes with Unicode 9.0 data (its unicode-normalization-alignments
// crate): a character assigned later has no decomposition and combining class 0 there, so NFC
// leaves it, and the marks around it, as they are. ICU's FilteredNormalizer2 normalizes exactly
// that way: only runs of characters in the filter set, here those assigned by Unicode 9.0.
constexpr char kHfUnicodeAge[] = "[:age=9.0:]";

// Below U+0300 nothing decomposes, has a non-zero combining class or composes with a
// predecessor, so text without a byte that starts a later code point is already NFC.
constexpr unsigned char kFirstLeadAtU0300 = 0xCC;

struct HfNfc {
  std::unique_ptr<icu::UnicodeSet> assigned;
  std::unique_ptr<icu::FilteredNormalizer2> normalizer;  // null when ICU could not make it
};

const HfNfc& GetHfNfc() {
  static const HfNfc nfc = [] {
    HfNfc made;
    UErrorCode error = U_ZERO_ERROR;
    const icu::Normalizer2* full = icu::Normalizer2::getNFCInstance(error);
    made.assigned = std::make_unique<icu::UnicodeSet>(icu::UnicodeString(kHfUnicodeAge), error);
    if (U_FAILURE(error)) return made;
    made.assigned->freeze();  // frozen sets are safe to share between threads
    made.normalizer = std::make_unique<icu::FilteredNormalizer2>(*full, *made.assigned);
    return made;
  }();
  return nfc;
}

}  // namespace

absl::StatusOr<std::string> ToNfc(std::string_view text) {
  if (std::none_of(text.begin(), text.end(),
                   [](char c) { return static_cast<unsigned char>(c) >= kFirstLeadAtU0300; })) {
    return std::string(text);
  }
  const HfNfc& nfc = GetHfNfc();
  if (!nfc.normalizer) return absl::InternalError("ICU has no NFC data (libicu's data library is missing)");
  std::string out;
  out.reserve(text.size());
  icu::StringByteSink<std::string> sink(&out);
  UErrorCode error = U_ZERO_ERROR;
  nfc.normalizer->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink, nullptr,
                                error);
  if (U_FAILURE(error)) return absl::InternalError(std::string("NFC failed: ") + u_errorName(error));
  return out;
}

}  // namespace xlserve::tokenizer_internal
