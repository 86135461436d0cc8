#include "engine/tokenizer/internal/regex.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/internal/utf8.h"

namespace xlserve::tokenizer_internal {
namespace {

// All successive matches of `pattern` in `text`, as UTF-8 strings.
std::vector<std::string> FindAll(const std::string& pattern, const std::string& text) {
  auto regex = Regex::Compile(pattern);
  INFO(regex.status().ToString());
  REQUIRE(regex.ok());
  std::vector<char32_t> chars;
  std::vector<std::uint32_t> offsets;
  REQUIRE(DecodeUtf8(text, &chars, &offsets).ok());
  std::vector<std::string> out;
  Regex::Match m;
  for (std::size_t from = 0; from <= chars.size() && regex->Search(chars, from, &m);
       from = m.end > m.begin ? m.end : m.end + 1) {
    out.push_back(text.substr(offsets[m.begin], offsets[m.end] - offsets[m.begin]));
  }
  return out;
}

using Strings = std::vector<std::string>;

constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

TEST_CASE("GPT-2 pattern splits words, numbers, punctuation and space runs") {
  CHECK(FindAll(kGpt2, "Hello world's  3.14!!\n\n  x") ==
        Strings{"Hello", " world", "'s", " ", " 3", ".", "14", "!!", "\n\n ", " x"});
  CHECK(FindAll(kGpt2, "trailing   ") == Strings{"trailing", "   "});
  CHECK(FindAll(kGpt2, "日本語 テキスト") == Strings{"日本語", " テキスト"});
}

TEST_CASE("alternatives are tried in order, not longest first") {
  CHECK(FindAll("a|ab", "ab") == Strings{"a"});
  CHECK(FindAll("ab|a", "ab") == Strings{"ab"});
}

TEST_CASE("greedy quantifiers backtrack") {
  CHECK(FindAll("a+ab", "aaab") == Strings{"aaab"});
  CHECK(FindAll("(?:ab)+c", "ababc abc") == Strings{"ababc", "abc"});
  CHECK(FindAll(R"(\p{N}{1,3})", "1234567") == Strings{"123", "456", "7"});
  CHECK(FindAll("x{2}", "xxxxx") == Strings{"xx", "xx"});
  CHECK(FindAll("x{2,}", "x xx xxxx") == Strings{"xx", "xxxx"});
  CHECK(FindAll("x{,2}y", "xxxy") == Strings{"xxy"});
  CHECK(FindAll("(?:ab){1,2}", "ababab") == Strings{"abab", "ab"});
  CHECK(FindAll("colou?r", "color colour") == Strings{"color", "colour"});
  CHECK(FindAll("a{b", "a{b") == Strings{"a{b"});  // a brace that is no quantifier is literal
}

TEST_CASE("lookahead") {
  CHECK(FindAll(R"(\s+(?!\S))", "a   b") == Strings{"  "});
  CHECK(FindAll(R"(\w+(?=!))", "hey you!") == Strings{"you"});
  CHECK(FindAll(R"((?!ab)\w\w)", "abcd") == Strings{"bc"});
}

TEST_CASE("classes, negation, escapes and properties") {
  CHECK(FindAll(R"([^\s\p{L}\p{N}]+)", "a+-b 1*") == Strings{"+-", "*"});
  CHECK(FindAll(R"([\r\n]+)", "a\r\n\nb") == Strings{"\r\n\n"});
  CHECK(FindAll(R"(\p{Lu}\p{Ll}+)", "HelloWorld ÉcoleΣοφία") ==
        Strings{"Hello", "World", "École", "Σοφία"});
  CHECK(FindAll(R"(\P{L}+)", "ab12cd") == Strings{"12"});
  CHECK(FindAll(R"(\p{^N}+)", "ab12cd") == Strings{"ab", "cd"});
  CHECK(FindAll(R"([a-c\x{4e00}-\x{9fff}]+)", "abcd中文x") == Strings{"abc", "中文"});
  CHECK(FindAll(R"(\d+)", "x٣٤٥y12") == Strings{"٣٤٥", "12"});
  CHECK(FindAll(R"(\p{M}+)", "e\xCC\x81\xCC\x88") == Strings{"\xCC\x81\xCC\x88"});
  CHECK(FindAll(R"([\p{P}\p{S}]+)", "a!$+b") == Strings{"!$+"});
  CHECK(FindAll(R"(\u00e9|\.)", "é.x") == Strings{"é", "."});
  CHECK(FindAll(R"([]a]+)", "]a]b") == Strings{"]a]"});
  CHECK(FindAll(R"([a-])", "-") == Strings{"-"});
  CHECK(FindAll(".", "a\nb") == Strings{"a", "b"});
  CHECK(FindAll(R"(\S+)", "a\u3000b") == Strings{"a", "b"});  // U+3000 is white space
}

TEST_CASE("case-insensitive groups fold ASCII and the ASCII-related non-ASCII letters") {
  const std::string contractions = R"((?i:'s|'t|'re|'ve|'m|'ll|'d))";
  CHECK(FindAll(contractions, "I'M 'Re 'LL 'ſ") == Strings{"'M", "'Re", "'LL", "'ſ"});
  CHECK(FindAll("(?i:k)", "kK\u212A") == Strings{"k", "K", "\u212A"});
  CHECK(FindAll("(?i:[a-z]+)", "AbC") == Strings{"AbC"});
  CHECK(FindAll("(?i:é)", "É") == Strings{"É"});
  CHECK(FindAll("a(?i)b|c", "aB aC C") == Strings{"aB", "aC"});  // a(?i:b|c)
  CHECK(FindAll("(?i:a(?-i:b))", "AB Ab") == Strings{"Ab"});
  CHECK(FindAll("(?i:[^a])", "Aab") == Strings{"b"});
}

TEST_CASE("anchors") {
  CHECK(FindAll("^a", "a\na") == Strings{"a", "a"});
  CHECK(FindAll(R"(\Aa)", "a\na") == Strings{"a"});
  CHECK(FindAll(R"(a\z)", "a\na") == Strings{"a"});
  CHECK(FindAll("a$", "ab\na") == Strings{"a"});
}

TEST_CASE("long runs need no deep recursion") {
  const std::string word(200000, 'x');
  CHECK(FindAll(kGpt2, word) == Strings{word});
  const std::string spaces(100000, ' ');
  CHECK(FindAll(kGpt2, spaces + "a") == Strings{spaces.substr(1), " a"});
}

TEST_CASE("unsupported or malformed patterns are errors naming the construct") {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"(?<=a)b", "lookbehind"},
      {"a+?", "lazy"},
      {"a*+", "possessive"},
      {R"((a)\1)", "escape \\1"},
      {R"(\p{Han})", "\\p{Han}"},
      {"(a", "missing ')'"},
      {"a)", "unbalanced"},
      {"[a", "missing ']'"},
      {"[[:alpha:]]", "nested class"},
      {"*a", "without anything to repeat"},
      {R"(\b)", "escape \\b"},
      {"(?:a*)*", "can match empty"},
      {"z{3,1}", "m > n"},
      {"[z-a]", "out of order"},
  };
  for (const auto& [pattern, fragment] : bad) {
    INFO(pattern);
    auto regex = Regex::Compile(pattern);
    REQUIRE_FALSE(regex.ok());
    CHECK(std::string(regex.status().message()).find(fragment) != std::string::npos);
  }
}

}  // namespace
}  // namespace xlserve::tokenizer_internal
