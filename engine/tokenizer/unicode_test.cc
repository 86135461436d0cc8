#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/internal/added_vocabulary.h"
#include "engine/tokenizer/internal/nfc.h"
#include "engine/tokenizer/internal/utf8.h"

namespace xlserve::tokenizer_internal {
namespace {

// The text of each segment Split makes of `text`, with "<id>" for the added tokens.
std::vector<std::string> SplitText(const AddedVocabulary& vocab, const std::string& text) {
  std::vector<AddedVocabulary::Segment> segments;
  vocab.Split(text, false, &segments);
  std::vector<std::string> out;
  for (const auto& s : segments) out.push_back(s.id >= 0 ? "<" + std::to_string(s.id) + ">" : std::string(s.text));
  return out;
}

using Strings = std::vector<std::string>;

TEST_CASE("single_word uses Rust's \\w: joiners are word characters, superscript digits are not") {
  auto vocab = AddedVocabulary::FromJson(
      nlohmann::json::array({{{"id", 7}, {"content", "tok"}, {"special", true}, {"single_word", true}}}), nullptr);
  REQUIRE(vocab.ok());
  CHECK(SplitText(*vocab, "a tok b") == Strings{"a ", "<7>", " b"});
  CHECK(SplitText(*vocab, "atok") == Strings{"atok"});
  CHECK(SplitText(*vocab, "\u200Dtok") == Strings{"\u200Dtok"});  // ZWJ: Join_Control
  CHECK(SplitText(*vocab, "\u00E9tok") == Strings{"\u00E9tok"});  // é: Alphabetic
  CHECK(SplitText(*vocab, "\u00B2tok") == Strings{"\u00B2", "<7>"});  // ²: No, not Nd
}

TEST_CASE("lstrip and rstrip absorb Unicode white space") {
  auto vocab = AddedVocabulary::FromJson(
      nlohmann::json::array({{{"id", 3}, {"content", "<s>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}}}),
      nullptr);
  REQUIRE(vocab.ok());
  CHECK(SplitText(*vocab, "a \u3000<s>\u00A0\tb") == Strings{"a", "<3>", "b"});
  CHECK(SplitText(*vocab, "a\u200B<s>b") == Strings{"a\u200B", "<3>", "b"});  // ZWSP is not white space
}

TEST_CASE("lossy UTF-8 replaces each maximal invalid subpart once") {
  const std::string r = "\xEF\xBF\xBD";
  const auto lossy = [](const std::string& bytes) {
    std::string out;
    AppendLossyUtf8(bytes, &out);
    return out;
  };
  CHECK(lossy("ok") == "ok");
  CHECK(lossy("\xF0\x9F\x98") == r);
  CHECK(lossy("\xE0\x80") == r + r);                  // E0 80 is overlong: the lead stands alone
  CHECK(lossy("\xED\xA0\x80") == r + r + r);          // surrogate
  CHECK(lossy("\xF4\x90\x80\x80") == r + r + r + r);  // beyond U+10FFFF
  CHECK(lossy("\xC3\xA9\xFF") == "\xC3\xA9" + r);
}

TEST_CASE("incomplete tails are found only when they could still complete") {
  CHECK(IncompleteUtf8TailLength("abc") == 0);
  CHECK(IncompleteUtf8TailLength("a\xF0\x9F\x98") == 3);
  CHECK(IncompleteUtf8TailLength("a\xF0\x9F") == 2);
  CHECK(IncompleteUtf8TailLength("\xE4") == 1);
  CHECK(IncompleteUtf8TailLength("\xE4\xBD\xA0") == 0);
  CHECK(IncompleteUtf8TailLength("\x80\x80") == 0);
  CHECK(IncompleteUtf8TailLength("\xE0\x80") == 0);  // already invalid
}

TEST_CASE("strict decoding reports the offending offset") {
  std::vector<char32_t> cps;
  std::vector<std::uint32_t> offsets;
  REQUIRE(DecodeUtf8("a\xC3\xA9\xF0\x9F\x98\x80", &cps, &offsets).ok());
  CHECK(cps == std::vector<char32_t>{'a', 0xE9, 0x1F600});
  CHECK(offsets == std::vector<std::uint32_t>{0, 1, 3, 7});
  const absl::Status bad = DecodeUtf8("ab\xFF", &cps, nullptr);
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.message()).find("byte offset 2") != std::string::npos);
}

std::string Nfc(std::string_view text) {
  absl::StatusOr<std::string> nfc = ToNfc(text);
  REQUIRE(nfc.ok());
  return *nfc;
}

TEST_CASE("NFC composes, reorders marks and handles Hangul") {
  CHECK(Nfc("plain ASCII") == "plain ASCII");
  CHECK(Nfc("caf\u00e9 \u00ff") == "caf\u00e9 \u00ff");  // below U+0300: returned as is
  CHECK(Nfc("cafe\u0301") == "caf\u00e9");
  CHECK(Nfc("a\u0302\u0323") == "\u1ead");       // marks reordered, then composed
  CHECK(Nfc("\u212b") == "\u00c5");               // singleton
  CHECK(Nfc("\u0958") == "\u0915\u093c");         // composition exclusion stays apart
  CHECK(Nfc("\u1100\u1161\u11a8") == "\uac01");  // Hangul L V T
  CHECK(Nfc("\u0301x") == "\u0301x");              // leading mark has nothing to join
}

TEST_CASE("NFC knows Unicode 9.0, as HF's normalizer does: later characters stay as they are") {
  CHECK(Nfc("O\u1dc9\u1dfa") == "O\u1dc9\u1dfa");  // U+1DFA (Unicode 14) keeps class 0: no reordering
  CHECK(Nfc("a\u0345\u0898") == "a\u0345\u0898");  // U+0898 (Unicode 14)
  CHECK(Nfc("\U00011935\U00011930") == "\U00011935\U00011930");  // would compose to U+11938 (Unicode 13)
  CHECK(Nfc("e\u0301\U00011935\u0301") == "\u00e9\U00011935\u0301");
}

}  // namespace
}  // namespace xlserve::tokenizer_internal
