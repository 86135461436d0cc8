// Recursive-descent parser for the Oniguruma subset described in regex.h.
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/internal/regex_syntax.h"
#include "engine/tokenizer/internal/utf8.h"
#include "base/status_macros.h"

namespace xlserve::tokenizer_internal {
namespace {

using G = GeneralCategory;

std::unique_ptr<RegexNode> MakeNode(RegexNode::Kind kind) {
  auto node = std::make_unique<RegexNode>();
  node->kind = kind;
  return node;
}

std::optional<CategoryMask> CategoryByName(std::string_view name) {
  struct Entry {
    std::string_view name;
    CategoryMask mask;
  };
  const CategoryMask L =
      MaskOf(G::kLu) | MaskOf(G::kLl) | MaskOf(G::kLt) | MaskOf(G::kLm) | MaskOf(G::kLo);
  const CategoryMask M = MaskOf(G::kMn) | MaskOf(G::kMc) | MaskOf(G::kMe);
  const CategoryMask N = MaskOf(G::kNd) | MaskOf(G::kNl) | MaskOf(G::kNo);
  const CategoryMask P = MaskOf(G::kPc) | MaskOf(G::kPd) | MaskOf(G::kPs) | MaskOf(G::kPe) |
                         MaskOf(G::kPi) | MaskOf(G::kPf) | MaskOf(G::kPo);
  const CategoryMask S = MaskOf(G::kSm) | MaskOf(G::kSc) | MaskOf(G::kSk) | MaskOf(G::kSo);
  const CategoryMask Z = MaskOf(G::kZs) | MaskOf(G::kZl) | MaskOf(G::kZp);
  const CategoryMask C =
      MaskOf(G::kCc) | MaskOf(G::kCf) | MaskOf(G::kCs) | MaskOf(G::kCo) | MaskOf(G::kCn);
  const Entry entries[] = {
      {"L", L},
      {"Letter", L},
      {"M", M},
      {"Mark", M},
      {"N", N},
      {"Number", N},
      {"P", P},
      {"Punctuation", P},
      {"S", S},
      {"Symbol", S},
      {"Z", Z},
      {"Separator", Z},
      {"C", C},
      {"Other", C},
      {"LC", MaskOf(G::kLu) | MaskOf(G::kLl) | MaskOf(G::kLt)},
      {"Lu", MaskOf(G::kLu)},
      {"Ll", MaskOf(G::kLl)},
      {"Lt", MaskOf(G::kLt)},
      {"Lm", MaskOf(G::kLm)},
      {"Lo", MaskOf(G::kLo)},
      {"Mn", MaskOf(G::kMn)},
      {"Mc", MaskOf(G::kMc)},
      {"Me", MaskOf(G::kMe)},
      {"Nd", MaskOf(G::kNd)},
      {"Nl", MaskOf(G::kNl)},
      {"No", MaskOf(G::kNo)},
      {"Pc", MaskOf(G::kPc)},
      {"Pd", MaskOf(G::kPd)},
      {"Ps", MaskOf(G::kPs)},
      {"Pe", MaskOf(G::kPe)},
      {"Pi", MaskOf(G::kPi)},
      {"Pf", MaskOf(G::kPf)},
      {"Po", MaskOf(G::kPo)},
      {"Sm", MaskOf(G::kSm)},
      {"Sc", MaskOf(G::kSc)},
      {"Sk", MaskOf(G::kSk)},
      {"So", MaskOf(G::kSo)},
      {"Zs", MaskOf(G::kZs)},
      {"Zl", MaskOf(G::kZl)},
      {"Zp", MaskOf(G::kZp)},
      {"Cc", MaskOf(G::kCc)},
      {"Cf", MaskOf(G::kCf)},
      {"Cs", MaskOf(G::kCs)},
      {"Co", MaskOf(G::kCo)},
      {"Cn", MaskOf(G::kCn)},
  };
  for (const Entry& e : entries) {
    if (e.name == name) return e.mask;
  }
  return std::nullopt;
}

class Parser {
 public:
  Parser(std::string_view pattern, std::vector<char32_t> chars, Regex::Program* program)
      : pattern_(pattern), chars_(std::move(chars)), program_(program) {}

  absl::StatusOr<std::unique_ptr<RegexNode>> ParseAll() {
    auto node = ParseAlternation();
    if (!node.ok()) return node.status();
    if (pos_ < chars_.size()) return Error("unbalanced ')'");
    return node;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("regex \"", pattern_, "\": ", what, " at character ", pos_));
  }
  absl::Status Unsupported(const std::string& what) const {
    return Error(absl::StrCat("unsupported construct ", what));
  }

  bool AtEnd() const { return pos_ >= chars_.size(); }
  char32_t Peek(std::size_t ahead = 0) const {
    return pos_ + ahead < chars_.size() ? chars_[pos_ + ahead] : 0;
  }

  absl::StatusOr<std::unique_ptr<RegexNode>> ParseAlternation() {
    auto alternation = MakeNode(RegexNode::Kind::kAlternation);
    while (true) {
      auto branch = ParseConcat();
      if (!branch.ok()) return branch.status();
      alternation->children.push_back(std::move(*branch));
      if (AtEnd() || Peek() != '|') break;
      ++pos_;
    }
    if (alternation->children.size() == 1) return std::move(alternation->children[0]);
    return alternation;
  }

  absl::StatusOr<std::unique_ptr<RegexNode>> ParseConcat() {
    auto concat = MakeNode(RegexNode::Kind::kConcat);
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      // As in Oniguruma, a bare (?i) or (?-i) turns the rest of the enclosing group, later
      // alternatives included, into one group with that setting: a(?i)b|c is a(?i:b|c).
      if (Peek() == '(' && Peek(1) == '?' && (Peek(2) == 'i' || Peek(2) == '-') &&
          (Peek(3) == ')' || (Peek(2) == '-' && Peek(3) == 'i' && Peek(4) == ')'))) {
        const bool saved_case_insensitive = case_insensitive_;
        case_insensitive_ = Peek(2) == 'i';
        pos_ += case_insensitive_ ? 4 : 5;
        auto rest = ParseAlternation();
        if (!rest.ok()) return rest.status();
        concat->children.push_back(std::move(*rest));
        case_insensitive_ = saved_case_insensitive;
        break;
      }
      auto atom = ParseAtom();
      if (!atom.ok()) return atom.status();
      auto quantified = ParseQuantifiers(std::move(*atom));
      if (!quantified.ok()) return quantified.status();
      concat->children.push_back(std::move(*quantified));
    }
    if (concat->children.size() == 1) return std::move(concat->children[0]);
    return concat;
  }

  // Parses {n}, {n,}, {n,m} or {,m} at pos_ (which is at '{'); nullopt when it is a literal brace.
  std::optional<std::pair<std::uint32_t, std::uint32_t>> TryParseBraces() {
    std::size_t p = pos_ + 1;
    auto read_number = [&](std::optional<std::uint32_t>* out) {
      std::uint64_t value = 0;
      std::size_t digits = 0;
      while (p < chars_.size() && chars_[p] >= '0' && chars_[p] <= '9' && value < 100000) {
        value = value * 10 + (chars_[p] - '0');
        ++p;
        ++digits;
      }
      if (digits > 0) *out = static_cast<std::uint32_t>(value);
    };
    std::optional<std::uint32_t> lo, hi;
    read_number(&lo);
    bool comma = false;
    if (p < chars_.size() && chars_[p] == ',') {
      comma = true;
      ++p;
      read_number(&hi);
    }
    if (p >= chars_.size() || chars_[p] != '}' || (!lo && !hi)) return std::nullopt;
    pos_ = p + 1;
    if (!comma) return std::make_pair(*lo, *lo);
    return std::make_pair(lo.value_or(0), hi.value_or(Regex::kUnbounded));
  }

  absl::StatusOr<std::unique_ptr<RegexNode>> ParseQuantifiers(std::unique_ptr<RegexNode> atom) {
    bool quantified = false;
    while (!AtEnd()) {
      std::uint32_t min, max;
      const char32_t c = Peek();
      if (c == '?' || c == '*' || c == '+') {
        min = c == '+' ? 1 : 0;
        max = c == '?' ? 1 : Regex::kUnbounded;
        ++pos_;
      } else if (c == '{') {
        auto braces = TryParseBraces();
        if (!braces) break;
        std::tie(min, max) = *braces;
        if (min > max) return Error("quantifier {m,n} with m > n");
      } else {
        break;
      }
      if (quantified) return Unsupported("stacked, lazy or possessive quantifier");
      if (!AtEnd() && (Peek() == '?' || Peek() == '+')) {
        return Unsupported("lazy or possessive quantifier");
      }
      if (atom->kind == RegexNode::Kind::kLookahead || atom->kind == RegexNode::Kind::kAssert) {
        return Unsupported("quantified assertion");
      }
      if (max == Regex::kUnbounded && Nullable(*atom)) {
        return Unsupported("unbounded repetition of a group that can match empty text");
      }
      auto repeat = MakeNode(RegexNode::Kind::kRepeat);
      repeat->min = min;
      repeat->max = max;
      repeat->children.push_back(std::move(atom));
      atom = std::move(repeat);
      quantified = true;
    }
    return atom;
  }

  std::unique_ptr<RegexNode> ClassNode(CharClass cls) {
    cls.set_case_insensitive(case_insensitive_);
    cls.Finish();
    program_->classes.push_back(std::move(cls));
    auto node = MakeNode(RegexNode::Kind::kClass);
    node->class_index = static_cast<std::uint32_t>(program_->classes.size() - 1);
    return node;
  }

  std::unique_ptr<RegexNode> AssertNode(Regex::AssertKind kind) {
    auto node = MakeNode(RegexNode::Kind::kAssert);
    node->assert_kind = kind;
    return node;
  }

  absl::StatusOr<std::unique_ptr<RegexNode>> ParseAtom() {
    const char32_t c = Peek();
    switch (c) {
      case '(':
        return ParseGroup();
      case '[': {
        ++pos_;
        auto cls = ParseClassBody();
        if (!cls.ok()) return cls.status();
        return ClassNode(std::move(*cls));
      }
      case '.': {
        ++pos_;
        CharClass cls;
        cls.AddRange('\n', '\n');
        cls.set_negated(true);
        return ClassNode(std::move(cls));
      }
      case '^':
        ++pos_;
        return AssertNode(Regex::kLineStart);
      case '$':
        ++pos_;
        return AssertNode(Regex::kLineEnd);
      case '*':
      case '+':
      case '?':
        return Error("quantifier without anything to repeat");
      case '\\': {
        ++pos_;
        if (AtEnd()) return Error("pattern ends with a backslash");
        const char32_t e = Peek();
        if (e == 'A' || e == 'z' || e == 'Z') {
          ++pos_;
          return AssertNode(e == 'A' ? Regex::kTextStart
                                     : (e == 'z' ? Regex::kTextEnd : Regex::kTextEndOrNewline));
        }
        CharClass cls;
        auto single = ParseEscape(&cls);
        if (!single.ok()) return single.status();
        if (*single) cls.AddRange(**single, **single);
        return ClassNode(std::move(cls));
      }
      default: {
        ++pos_;
        CharClass cls;
        cls.AddRange(c, c);
        return ClassNode(std::move(cls));
      }
    }
  }

  absl::StatusOr<std::unique_ptr<RegexNode>> ParseGroup() {
    ++pos_;  // '('
    const bool saved_case_insensitive = case_insensitive_;
    std::unique_ptr<RegexNode> lookahead;
    if (Peek() == '?') {
      const char32_t kind = Peek(1);
      if (kind == ':') {
        pos_ += 2;
      } else if (kind == '=' || kind == '!') {
        pos_ += 2;
        lookahead = MakeNode(RegexNode::Kind::kLookahead);
        lookahead->negated = kind == '!';
      } else if (kind == 'i' && Peek(2) == ':') {
        pos_ += 3;
        case_insensitive_ = true;
      } else if (kind == '-' && Peek(2) == 'i' && Peek(3) == ':') {
        pos_ += 4;
        case_insensitive_ = false;
      } else if (kind == '<' && (Peek(2) == '=' || Peek(2) == '!')) {
        return Unsupported("lookbehind (?<=...) / (?<!...)");
      } else {
        return Unsupported(absl::StrCat(
            "group (?", std::string(1, static_cast<char>(kind < 128 ? kind : '?')), "...)"));
      }
    }
    auto body = ParseAlternation();
    if (!body.ok()) return body.status();
    if (AtEnd() || Peek() != ')') return Error("missing ')'");
    ++pos_;
    case_insensitive_ = saved_case_insensitive;
    if (lookahead) {
      lookahead->children.push_back(std::move(*body));
      return lookahead;
    }
    return std::move(*body);
  }

  absl::StatusOr<std::uint32_t> ParseHex(std::size_t min_digits, std::size_t max_digits) {
    std::uint32_t value = 0;
    std::size_t digits = 0;
    while (digits < max_digits && !AtEnd()) {
      const char32_t h = Peek();
      int v;
      if (h >= '0' && h <= '9')
        v = h - '0';
      else if (h >= 'a' && h <= 'f')
        v = h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        v = h - 'A' + 10;
      else
        break;
      value = value * 16 + v;
      ++digits;
      ++pos_;
    }
    if (digits < min_digits || value > 0x10FFFF) return Error("bad hexadecimal escape");
    return value;
  }

  // Parses the escape after a backslash (pos_ at the escaped character). An escape that stands
  // for one code point returns it; a set (\s, \p{L}, ...) is added to `cls` and gives nullopt.
  absl::StatusOr<std::optional<char32_t>> ParseEscape(CharClass* cls) {
    const char32_t e = Peek();
    ++pos_;
    switch (e) {
      case 's':
        cls->AddWhiteSpace(false);
        return std::nullopt;
      case 'S':
        cls->AddWhiteSpace(true);
        return std::nullopt;
      case 'w':
        cls->AddWord(false);
        return std::nullopt;
      case 'W':
        cls->AddWord(true);
        return std::nullopt;
      case 'd':
        cls->AddCategories(MaskOf(G::kNd));
        return std::nullopt;
      case 'D':
        cls->AddCategoryComplement(MaskOf(G::kNd));
        return std::nullopt;
      case 't':
        return '\t';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 'f':
        return '\f';
      case 'v':
        return '\v';
      case 'e':
        return 0x1B;
      case 'a':
        return 0x07;
      case 'p':
      case 'P':
        RETURN_IF_ERROR(ParseProperty(e == 'P', cls));
        return std::nullopt;
      case 'x': {
        absl::StatusOr<std::uint32_t> value;
        if (Peek() == '{') {
          ++pos_;
          value = ParseHex(1, 8);
          if (!value.ok()) return value.status();
          if (Peek() != '}') return Error("missing '}' in \\x{...}");
          ++pos_;
        } else {
          value = ParseHex(1, 2);
          if (!value.ok()) return value.status();
        }
        return *value;
      }
      case 'u': {
        auto value = ParseHex(4, 4);
        if (!value.ok()) return value.status();
        return *value;
      }
      default:
        break;
    }
    const bool alphanumeric =
        (e >= '0' && e <= '9') || (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z');
    if (alphanumeric) {
      --pos_;
      return Unsupported(absl::StrCat("escape \\", std::string(1, static_cast<char>(e))));
    }
    return e;
  }

  absl::Status ParseProperty(bool negated, CharClass* cls) {
    if (Peek() != '{') return Error("expected '{' after \\p");
    ++pos_;
    if (Peek() == '^') {
      negated = !negated;
      ++pos_;
    }
    std::string name;
    while (!AtEnd() && Peek() != '}') {
      if (Peek() >= 128) return Error("bad property name");
      name.push_back(static_cast<char>(Peek()));
      ++pos_;
    }
    if (AtEnd()) return Error("missing '}' in \\p{...}");
    ++pos_;
    const std::optional<CategoryMask> mask = CategoryByName(name);
    if (!mask) return Unsupported(absl::StrCat("Unicode property \\p{", name, "}"));
    if (negated) {
      cls->AddCategoryComplement(*mask);
    } else {
      cls->AddCategories(*mask);
    }
    return absl::OkStatus();
  }

  // Parses a class after its '['; consumes the closing ']'.
  absl::StatusOr<CharClass> ParseClassBody() {
    CharClass cls;
    if (Peek() == '^') {
      cls.set_negated(true);
      ++pos_;
    }
    bool first = true;
    while (true) {
      if (AtEnd()) return Error("missing ']'");
      char32_t c = Peek();
      if (c == ']' && !first) {
        ++pos_;
        return cls;
      }
      first = false;
      if (c == '[') return Unsupported("nested class or POSIX bracket [[...]]");
      if (c == '&' && Peek(1) == '&') return Unsupported("class intersection &&");
      char32_t lo;
      if (c == '\\') {
        ++pos_;
        if (AtEnd()) return Error("pattern ends with a backslash");
        auto single = ParseEscape(&cls);
        if (!single.ok()) return single.status();
        if (!*single) {
          if (Peek() == '-' && Peek(1) != ']') return Error("class range starting at a set escape");
          continue;
        }
        lo = **single;
      } else {
        lo = c;
        ++pos_;
      }
      char32_t hi = lo;
      if (Peek() == '-' && Peek(1) != ']' && pos_ + 1 < chars_.size()) {
        ++pos_;
        const char32_t h = Peek();
        if (h == '\\') {
          ++pos_;
          CharClass unused;
          auto single = ParseEscape(&unused);
          if (!single.ok()) return single.status();
          if (!*single) return Error("class range ending at a set escape");
          hi = **single;
        } else if (h == '[') {
          return Unsupported("nested class in range");
        } else {
          hi = h;
          ++pos_;
        }
        if (hi < lo) return Error("class range out of order");
      }
      cls.AddRange(lo, hi);
    }
  }

  std::string pattern_;
  std::vector<char32_t> chars_;
  Regex::Program* program_;
  std::size_t pos_ = 0;
  bool case_insensitive_ = false;
};

}  // namespace

bool Nullable(const RegexNode& node) {
  switch (node.kind) {
    case RegexNode::Kind::kClass:
      return false;
    case RegexNode::Kind::kConcat:
      for (const auto& child : node.children) {
        if (!Nullable(*child)) return false;
      }
      return true;
    case RegexNode::Kind::kAlternation:
      for (const auto& child : node.children) {
        if (Nullable(*child)) return true;
      }
      return false;
    case RegexNode::Kind::kRepeat:
      return node.min == 0 || Nullable(*node.children[0]);
    case RegexNode::Kind::kLookahead:
    case RegexNode::Kind::kAssert:
      return true;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<RegexNode>> ParseRegex(std::string_view pattern,
                                                      Regex::Program* program) {
  std::vector<char32_t> chars;
  absl::Status utf8 = DecodeUtf8(pattern, &chars, nullptr);
  if (!utf8.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("regex pattern: ", utf8.message()));
  }
  Parser parser(pattern, std::move(chars), program);
  return parser.ParseAll();
}

}  // namespace xlserve::tokenizer_internal
