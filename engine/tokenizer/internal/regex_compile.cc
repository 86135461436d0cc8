// Compiles a regex syntax tree into the Regex::Program that regex_match.cc interprets, and
// implements CharClass membership.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/internal/regex_syntax.h"
#include "base/status_macros.h"

namespace xlserve::tokenizer_internal {
namespace {

// Instruction count beyond which counted repetition of groups is refused.
constexpr std::size_t kMaxProgramSize = 100000;

class Compiler {
 public:
  explicit Compiler(Regex::Program* program) : program_(program) {}

  absl::Status Emit(const RegexNode& node) {
    if (program_->code.size() > kMaxProgramSize) {
      return absl::InvalidArgumentError("regex program too large (counted repetition too big)");
    }
    switch (node.kind) {
      case RegexNode::Kind::kClass:
        Add({.op = Regex::Op::kClass, .arg = node.class_index});
        return absl::OkStatus();
      case RegexNode::Kind::kConcat:
        for (const auto& child : node.children) RETURN_IF_ERROR(Emit(*child));
        return absl::OkStatus();
      case RegexNode::Kind::kAlternation:
        return EmitAlternation(node, 0);
      case RegexNode::Kind::kRepeat:
        return EmitRepeat(node);
      case RegexNode::Kind::kLookahead: {
        const std::uint32_t look =
            Add({.op = Regex::Op::kLookahead, .arg = node.negated ? 1u : 0u});
        RETURN_IF_ERROR(Emit(*node.children[0]));
        Add({.op = Regex::Op::kMatch});
        program_->code[look].x = Here();
        return absl::OkStatus();
      }
      case RegexNode::Kind::kAssert:
        Add({.op = Regex::Op::kAssert, .arg = node.assert_kind});
        return absl::OkStatus();
    }
    return absl::InternalError("unknown regex node");
  }

  std::uint32_t Add(Regex::Inst inst) {
    program_->code.push_back(inst);
    return static_cast<std::uint32_t>(program_->code.size() - 1);
  }

 private:
  std::uint32_t Here() const { return static_cast<std::uint32_t>(program_->code.size()); }

  absl::Status EmitAlternation(const RegexNode& node, std::size_t index) {
    if (index + 1 == node.children.size()) return Emit(*node.children[index]);
    const std::uint32_t split = Add({.op = Regex::Op::kSplit});
    program_->code[split].x = Here();
    RETURN_IF_ERROR(Emit(*node.children[index]));
    const std::uint32_t jump = Add({.op = Regex::Op::kJump});
    program_->code[split].y = Here();
    RETURN_IF_ERROR(EmitAlternation(node, index + 1));
    program_->code[jump].x = Here();
    return absl::OkStatus();
  }

  absl::Status EmitRepeat(const RegexNode& node) {
    const RegexNode& body = *node.children[0];
    if (body.kind == RegexNode::Kind::kClass) {
      Add({.op = Regex::Op::kRun, .arg = body.class_index, .min = node.min, .max = node.max});
      return absl::OkStatus();
    }
    for (std::uint32_t i = 0; i < node.min; ++i) RETURN_IF_ERROR(Emit(body));
    if (node.max == Regex::kUnbounded) {
      const std::uint32_t split = Add({.op = Regex::Op::kSplit});
      program_->code[split].x = Here();
      RETURN_IF_ERROR(Emit(body));
      Add({.op = Regex::Op::kJump, .x = split});
      program_->code[split].y = Here();
      return absl::OkStatus();
    }
    // Optional copies nest: x{0,2} is (x(x)?)?; every skip jumps to the common end.
    std::vector<std::uint32_t> splits;
    for (std::uint32_t i = node.min; i < node.max; ++i) {
      const std::uint32_t split = Add({.op = Regex::Op::kSplit});
      program_->code[split].x = Here();
      splits.push_back(split);
      RETURN_IF_ERROR(Emit(body));
    }
    for (std::uint32_t split : splits) program_->code[split].y = Here();
    return absl::OkStatus();
  }

  Regex::Program* program_;
};

// Extra members of the simple case-folding orbit of `c` that this matcher knows about.

int CaseVariants(char32_t c, char32_t out[3]) {
  int n = 0;
  auto fold_to_ascii = [&](char32_t lower, char32_t special) {
    out[n++] = lower;
    out[n++] = lower - 32;
    out[n++] = special;
  };
  switch (c) {
    case 's':
    case 'S':
    case 0x17F:
      fold_to_ascii('s', 0x17F);
      break;
    case 'k':
    case 'K':
    case 0x212A:
      fold_to_ascii('k', 0x212A);
      break;
    case 0xE5:
    case 0xC5:
    case 0x212B:
      fold_to_ascii(0xE5, 0x212B);
      break;
    default:
      if ((c >= 'a' && c <= 'z') || (c >= 0xE0 && c <= 0xFE && c != 0xF7)) {
        out[n++] = c - 32;
      } else if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7)) {
        out[n++] = c + 32;
      }
  }
  return n;
}

}  // namespace

bool CharClass::Contains(char32_t c) const {
  for (const CodepointRange& r : ranges_) {
    if (c >= r.first && c <= r.last) return true;
  }
  if (categories_ != 0 || !category_complements_.empty()) {
    const CategoryMask bit = MaskOf(CategoryOf(c));
    if ((categories_ & bit) != 0) return true;
    for (CategoryMask m : category_complements_) {
      if ((m & bit) == 0) return true;
    }
  }
  if (white_space_ || not_white_space_) {
    const bool space = IsWhiteSpace(c);
    if ((white_space_ && space) || (not_white_space_ && !space)) return true;
  }
  if (word_ || not_word_) {
    const bool word = IsWordChar(c);
    if ((word_ && word) || (not_word_ && !word)) return true;
  }
  return false;
}

bool CharClass::ContainsFolded(char32_t c) const {
  if (Contains(c)) return true;
  if (!case_insensitive_) return false;
  char32_t variants[3];
  const int n = CaseVariants(c, variants);
  for (int i = 0; i < n; ++i) {
    if (Contains(variants[i])) return true;
  }
  return false;
}

bool CharClass::MatchesSlow(char32_t c) const { return ContainsFolded(c) != negated_; }

void CharClass::Finish() {
  for (char32_t c = 0; c < 128; ++c) ascii_[c] = MatchesSlow(c);
}

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern) {
  auto program = std::make_shared<Program>();
  auto tree = ParseRegex(pattern, program.get());
  if (!tree.ok()) return tree.status();
  Compiler compiler(program.get());
  absl::Status emitted = compiler.Emit(**tree);
  if (!emitted.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("regex \"", std::string(pattern), "\": ", emitted.message()));
  }
  compiler.Add({.op = Op::kMatch});
  return Regex(std::string(pattern), std::move(program));
}

}  // namespace xlserve::tokenizer_internal
