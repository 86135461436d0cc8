#include <algorithm>
#include <array>

#include "engine/tokenizer/internal/unicode_tables.h"

namespace xlserve::tokenizer_internal {
namespace {

GeneralCategory SearchCategoryRuns(char32_t c) {
  const std::uint32_t* begin = kCategoryRuns;
  const std::uint32_t* end = kCategoryRuns + kCategoryRunCount;
  // Entries sort by their start because the start sits in the high bits.
  const std::uint32_t key = (static_cast<std::uint32_t>(c) << 5) | 31u;
  const std::uint32_t* it = std::upper_bound(begin, end, key);
  if (it == begin) return GeneralCategory::kCn;
  return static_cast<GeneralCategory>(*(it - 1) & 31u);
}

bool InRanges(const CodepointRange* ranges, std::size_t count, char32_t c) {
  const CodepointRange* end = ranges + count;
  const CodepointRange* it = std::upper_bound(
      ranges, end, c, [](char32_t v, const CodepointRange& r) { return v < r.first; });
  return it != ranges && c <= (it - 1)->last;
}

// Latin-1 text dominates most inputs; skip the binary search for it.
const std::array<GeneralCategory, 256>& Latin1Categories() {
  static const std::array<GeneralCategory, 256> table = [] {
    std::array<GeneralCategory, 256> t{};
    for (char32_t c = 0; c < 256; ++c) t[c] = SearchCategoryRuns(c);
    return t;
  }();
  return table;
}

}  // namespace

GeneralCategory CategoryOf(char32_t c) {
  if (c < 256) return Latin1Categories()[c];
  return SearchCategoryRuns(c);
}

bool IsWhiteSpace(char32_t c) { return InRanges(kWhiteSpaceRanges, kWhiteSpaceRangeCount, c); }

bool IsWordChar(char32_t c) {
  using G = GeneralCategory;
  constexpr CategoryMask kBase = MaskOf(G::kLu) | MaskOf(G::kLl) | MaskOf(G::kLt) | MaskOf(G::kLm) |
                                 MaskOf(G::kLo) | MaskOf(G::kMn) | MaskOf(G::kMc) | MaskOf(G::kMe) |
                                 MaskOf(G::kNd) | MaskOf(G::kNl) | MaskOf(G::kNo) | MaskOf(G::kPc);
  if (InRanges(kWordExtraRanges, kWordExtraRangeCount, c)) return true;
  if ((MaskOf(CategoryOf(c)) & kBase) == 0) return false;
  return !InRanges(kWordExcludedRanges, kWordExcludedRangeCount, c);
}

bool IsAddedTokenWordChar(char32_t c) {
  if (InRanges(kAddedTokenWordExtraRanges, kAddedTokenWordExtraRangeCount, c)) return true;
  if (InRanges(kAddedTokenWordExcludedRanges, kAddedTokenWordExcludedRangeCount, c)) return false;
  return IsWordChar(c);
}

bool IsNumeric(char32_t c) {
  using G = GeneralCategory;
  constexpr CategoryMask kNumber = MaskOf(G::kNd) | MaskOf(G::kNl) | MaskOf(G::kNo);
  return (MaskOf(CategoryOf(c)) & kNumber) != 0;
}

}  // namespace xlserve::tokenizer_internal
