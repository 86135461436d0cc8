#include "engine/tokenizer/internal/nfc.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/internal/normalization_tables.h"
#include "engine/tokenizer/internal/utf8.h"

namespace xlserve::tokenizer_internal {
namespace {

// Hangul syllables decompose and compose arithmetically (Unicode chapter 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Below U+0300 nothing decomposes, has a non-zero combining class or composes with a
// predecessor, so such text is already NFC.
constexpr char32_t kFirstNonTrivial = 0x300;

struct Tables {
  std::unordered_map<char32_t, std::vector<char32_t>> decomposition;  // full, not reordered
  std::unordered_map<std::uint64_t, char32_t> composition;  // (first, second) -> composite
};

std::uint64_t PairKey(char32_t a, char32_t b) { return (std::uint64_t{a} << 32) | b; }

const Tables& GetTables() {
  static const Tables tables = [] {
    Tables t;
    std::unordered_map<char32_t, const CanonicalMapping*> by_code_point;
    for (std::size_t i = 0; i < kCanonicalMappingCount; ++i) {
      by_code_point[kCanonicalMappings[i].code_point] = &kCanonicalMappings[i];
    }
    // Expands mappings recursively; canonical decompositions are at most a few levels deep.
    auto expand = [&](auto& self, char32_t c, std::vector<char32_t>* out) -> void {
      const auto it = by_code_point.find(c);
      if (it == by_code_point.end()) {
        out->push_back(c);
        return;
      }
      self(self, it->second->first, out);
      if (it->second->second != 0) self(self, it->second->second, out);
    };
    for (std::size_t i = 0; i < kCanonicalMappingCount; ++i) {
      const CanonicalMapping& m = kCanonicalMappings[i];
      std::vector<char32_t> full;
      expand(expand, m.code_point, &full);
      t.decomposition.emplace(m.code_point, std::move(full));
      if (m.recomposes) t.composition.emplace(PairKey(m.first, m.second), m.code_point);
    }
    return t;
  }();
  return tables;
}

int CombiningClass(char32_t c) {
  if (c < kFirstNonTrivial) return 0;
  const CombiningClassRange* begin = kCombiningClassRanges;
  const CombiningClassRange* end = kCombiningClassRanges + kCombiningClassRangeCount;
  const CombiningClassRange* it = std::upper_bound(
      begin, end, c, [](char32_t v, const CombiningClassRange& r) { return v < r.first; });
  if (it == begin || c > (it - 1)->last) return 0;
  return (it - 1)->combining_class;
}

void Decompose(char32_t c, const Tables& tables, std::vector<char32_t>* out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  const auto it = tables.decomposition.find(c);
  if (it == tables.decomposition.end()) {
    out->push_back(c);
  } else {
    out->insert(out->end(), it->second.begin(), it->second.end());
  }
}

// The primary composite of `a` followed by `b`, or 0.
char32_t Compose(char32_t a, char32_t b, const Tables& tables) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto it = tables.composition.find(PairKey(a, b));
  return it == tables.composition.end() ? 0 : it->second;
}

}  // namespace

std::string ToNfc(std::string_view text) {
  std::vector<char32_t> chars;
  if (!DecodeUtf8(text, &chars, nullptr).ok()) return std::string(text);
  if (std::all_of(chars.begin(), chars.end(), [](char32_t c) { return c < kFirstNonTrivial; })) {
    return std::string(text);
  }
  const Tables& tables = GetTables();
  std::vector<char32_t> decomposed;
  decomposed.reserve(chars.size() + 8);
  for (char32_t c : chars) Decompose(c, tables, &decomposed);

  // Canonical ordering: stable sort of each run of non-starters by combining class.
  std::vector<int> classes(decomposed.size());
  for (std::size_t i = 0; i < decomposed.size(); ++i) classes[i] = CombiningClass(decomposed[i]);
  for (std::size_t i = 0; i < decomposed.size();) {
    if (classes[i] == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < decomposed.size() && classes[j] != 0) ++j;
    std::vector<std::pair<int, char32_t>> run;
    for (std::size_t k = i; k < j; ++k) run.emplace_back(classes[k], decomposed[k]);
    std::stable_sort(run.begin(), run.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    for (std::size_t k = i; k < j; ++k) {
      classes[k] = run[k - i].first;
      decomposed[k] = run[k - i].second;
    }
    i = j;
  }

  // Canonical composition: a character joins the last starter unless something between them
  // blocks it (a character of class 0 or of a class not lower than its own).
  std::vector<char32_t> composed;
  composed.reserve(decomposed.size());
  std::ptrdiff_t starter = -1;
  int last_class = -1;  // class of the last character kept after the starter; -1: none
  for (std::size_t i = 0; i < decomposed.size(); ++i) {
    const char32_t c = decomposed[i];
    const int cc = classes[i];
    if (starter >= 0 && (last_class == -1 || (last_class != 0 && last_class < cc))) {
      const char32_t joined = Compose(composed[starter], c, tables);
      if (joined != 0) {
        composed[starter] = joined;
        continue;
      }
    }
    if (cc == 0) {
      starter = static_cast<std::ptrdiff_t>(composed.size());
      last_class = -1;
    } else {
      last_class = cc;
    }
    composed.push_back(c);
  }
  std::string out;
  out.reserve(text.size());
  for (char32_t c : composed) AppendUtf8(c, &out);
  return out;
}

}  // namespace xlserve::tokenizer_internal
