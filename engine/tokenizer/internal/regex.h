// A small backtracking regex matcher for the pre-tokenizer patterns found in tokenizer.json files
// (GPT-2, GPT-NeoX, Llama-3, Qwen, GPT-4o style). It follows Oniguruma's semantics (what HF
// `tokenizers` runs): leftmost match, alternatives tried in order, greedy quantifiers.
//
// Supported: literals and escapes (\t \n \r \f \v \e \a \xHH \x{H..} \uHHHH, escaped punctuation),
// `.`, classes [...] with ranges and negation, \s \S \d \D \w \W \p{..} \P{..} \p{^..} (general
// categories by short name, or Letter/Mark/Number/Punctuation/Symbol/Separator/Other), groups
// (...) (?:...) (?i:...) (?-i:...) (?i), lookahead (?=...) (?!...), ^ $ \A \z \Z, and greedy
// quantifiers ? * + {n} {n,} {n,m} {,m}. Anything else (lookbehind, back-references, lazy or
// possessive quantifiers, \b, nested classes) is rejected at Compile with an error naming it.
// Case-insensitive matching folds ASCII letters, Latin-1 letters and the three non-ASCII
// characters whose simple case folding is ASCII-related (U+017F, U+212A, U+212B).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/internal/unicode_tables.h"

namespace xlserve::tokenizer_internal {

// A set of code points: the union of its items, optionally negated.
class CharClass {
 public:
  void AddRange(char32_t first, char32_t last) { ranges_.push_back({first, last}); }
  void AddCategories(CategoryMask mask) { categories_ |= mask; }
  void AddCategoryComplement(CategoryMask mask) { category_complements_.push_back(mask); }
  void AddWhiteSpace(bool negated) { (negated ? not_white_space_ : white_space_) = true; }
  void AddWord(bool negated) { (negated ? not_word_ : word_) = true; }
  void set_negated(bool negated) { negated_ = negated; }
  bool negated() const { return negated_; }
  void set_case_insensitive(bool on) { case_insensitive_ = on; }

  // Precomputes the ASCII answers; call once the class is complete.
  void Finish();

  bool Matches(char32_t c) const {
    if (c < 128) return ascii_[c];
    return MatchesSlow(c);
  }

 private:
  bool MatchesSlow(char32_t c) const;
  bool ContainsFolded(char32_t c) const;
  bool Contains(char32_t c) const;

  std::vector<CodepointRange> ranges_;
  CategoryMask categories_ = 0;
  std::vector<CategoryMask> category_complements_;
  bool white_space_ = false;
  bool not_white_space_ = false;
  bool word_ = false;
  bool not_word_ = false;
  bool negated_ = false;
  bool case_insensitive_ = false;
  bool ascii_[128] = {};
};

class Regex {
 public:
  static absl::StatusOr<Regex> Compile(std::string_view pattern);

  struct Match {
    std::size_t begin;  // code point indices into the searched text
    std::size_t end;
  };

  // Finds the leftmost match in `text` that starts at or after `from`; false when none.
  bool Search(std::span<const char32_t> text, std::size_t from, Match* match) const;

  const std::string& pattern() const { return pattern_; }

  // Compiled program; public so that the compiler (regex_compile.cc) can build it.
  enum class Op : std::uint8_t {
    kClass,      // consume one code point in classes[arg]
    kRun,        // consume min..max code points in classes[arg], greedily
    kSplit,      // try x, on failure y
    kJump,       // continue at x
    kLookahead,  // run the sub-program at pc+1; continue at x if it matched (arg=0) or not (arg=1)
    kAssert,     // zero-width assertion of kind arg
    kMatch,
  };
  enum AssertKind : std::uint32_t { kLineStart, kLineEnd, kTextStart, kTextEnd, kTextEndOrNewline };
  static constexpr std::uint32_t kUnbounded = 0xFFFFFFFFu;
  struct Inst {
    Op op;
    std::uint32_t arg = 0;
    std::uint32_t x = 0;
    std::uint32_t y = 0;
    std::uint32_t min = 0;
    std::uint32_t max = 0;
  };
  struct Program {
    std::vector<Inst> code;
    std::vector<CharClass> classes;
  };

 private:
  Regex(std::string pattern, std::shared_ptr<const Program> program)
      : pattern_(std::move(pattern)), program_(std::move(program)) {}

  // Runs the program from `pc` at `pos`; returns the end of the first successful path.
  bool Run(std::uint32_t pc, std::span<const char32_t> text, std::size_t pos,
           std::size_t* end) const;

  std::string pattern_;
  std::shared_ptr<const Program> program_;  // immutable, shared by copies
};

}  // namespace xlserve::tokenizer_internal
