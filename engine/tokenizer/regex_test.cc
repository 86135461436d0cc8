#include "engine/tokenizer/internal/regex.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace xlserve::tokenizer_internal {
namespace {

// All successive matches of `pattern` in `text`, as strings.
std::vector<std::string> FindAll(const std::string& pattern, const std::string& text) {
  auto regex = Regex::Compile(pattern);
  INFO(regex.status().ToString());
  REQUIRE(regex.ok());
  std::vector<std::pair<size_t, size_t>> matches;
  REQUIRE(regex->FindAll(text, &matches).ok());
  std::vector<std::string> out;
  for (const auto& [begin, end] : matches) out.push_back(text.substr(begin, end - begin));
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
  CHECK(FindAll(kGpt2, "x\u3000y") == Strings{"x", "\u3000", "y"});  // U+3000 is white space, not " "
}

TEST_CASE("leftmost-first alternation, greedy backtracking, lookaround and Unicode properties") {
  CHECK(FindAll("a|ab", "ab") == Strings{"a"});
  CHECK(FindAll("a+ab", "aaab") == Strings{"aaab"});
  CHECK(FindAll(R"(\p{N}{1,3})", "1234567") == Strings{"123", "456", "7"});
  CHECK(FindAll(R"(\s+(?!\S))", "a   b") == Strings{"  "});
  CHECK(FindAll(R"((?<=x)y)", "xy ay") == Strings{"y"});
  CHECK(FindAll(R"(\p{Lu}\p{Ll}+)", "HelloWorld ÉcoleΣοφία") ==
        Strings{"Hello", "World", "École", "Σοφία"});
  CHECK(FindAll(R"(\d+)", "x٣٤٥y12") == Strings{"٣٤٥", "12"});
  CHECK(FindAll(R"(\p{N})", "a½Ⅷ3") == Strings{"½", "Ⅷ", "3"});  // No, Nl and Nd
  CHECK(FindAll(R"((?i:'s|'ll))", "I'S 'Ll") == Strings{"'S", "'Ll"});
}

TEST_CASE("empty matches follow HF's find_iter: none right where the last match ended") {
  CHECK(FindAll("a*", "ba") == Strings{"", "a"});
  CHECK(FindAll("x*", "") == Strings{""});
  CHECK(FindAll("", "é") == Strings{"", ""});  // steps over the whole two-byte character
}

TEST_CASE("long runs match in one piece") {
  const std::string word(200000, 'x');
  CHECK(FindAll(kGpt2, word) == Strings{word});
  const std::string spaces(100000, ' ');
  CHECK(FindAll(kGpt2, spaces + "a") == Strings{spaces.substr(1), " a"});
}

TEST_CASE("a match anchored at a byte reports its length") {
  auto space = Regex::Compile(R"(\p{White_Space}+)");
  REQUIRE(space.ok());
  CHECK(*space->MatchLengthAt("ab \u3000c", 2) == 4);
  CHECK(*space->MatchLengthAt("ab \u3000c", 1) == -1);
}

TEST_CASE("malformed patterns are errors with Oniguruma's message") {
  for (const std::string pattern : {"(a", "a)", "[a", "*a", "[z-a]", R"(\p{NoSuchProperty})"}) {
    INFO(pattern);
    auto regex = Regex::Compile(pattern);
    REQUIRE_FALSE(regex.ok());
    CHECK(regex.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(regex.status().message()).find(pattern) != std::string::npos);
  }
}

}  // namespace
}  // namespace xlserve::tokenizer_internal
