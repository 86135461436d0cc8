// The syntax tree shared by the regex parser (regex_parse.cc) and compiler (regex_compile.cc).
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/internal/regex.h"

namespace xlserve::tokenizer_internal {

struct RegexNode {
  enum class Kind { kClass, kConcat, kAlternation, kRepeat, kLookahead, kAssert };
  Kind kind;
  std::uint32_t class_index = 0;  // kClass
  std::vector<std::unique_ptr<RegexNode>> children;
  std::uint32_t min = 0, max = 0;  // kRepeat
  bool negated = false;            // kLookahead
  Regex::AssertKind assert_kind = Regex::kLineStart;
};

// Parses `pattern` into a tree; character classes are appended to `program->classes` and
// referenced by index. Errors name the pattern, the construct and its position.
absl::StatusOr<std::unique_ptr<RegexNode>> ParseRegex(std::string_view pattern,
                                                      Regex::Program* program);

// Whether `node` can match without consuming input (such bodies would loop under * or +).
bool Nullable(const RegexNode& node);

}  // namespace xlserve::tokenizer_internal
