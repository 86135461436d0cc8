#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/internal/nfc.h"
#include "engine/tokenizer/internal/unicode_tables.h"
#include "engine/tokenizer/internal/utf8.h"

namespace xlserve::tokenizer_internal {
namespace {

using G = GeneralCategory;

TEST_CASE("general categories of sample code points") {
  CHECK(CategoryOf('A') == G::kLu);
  CHECK(CategoryOf('z') == G::kLl);
  CHECK(CategoryOf('5') == G::kNd);
  CHECK(CategoryOf(' ') == G::kZs);
  CHECK(CategoryOf('\n') == G::kCc);
  CHECK(CategoryOf(0x4E2D) == G::kLo);   // 中
  CHECK(CategoryOf(0x0663) == G::kNd);   // Arabic-Indic three
  CHECK(CategoryOf(0x0301) == G::kMn);   // combining acute
  CHECK(CategoryOf(0x0903) == G::kMc);   // Devanagari visarga
  CHECK(CategoryOf(0x00BD) == G::kNo);   // ½
  CHECK(CategoryOf(0x2167) == G::kNl);   // Roman numeral eight
  CHECK(CategoryOf(0x1F600) == G::kSo);  // 😀
  CHECK(CategoryOf(0x200D) == G::kCf);   // zero-width joiner
  CHECK(CategoryOf(0x01C5) == G::kLt);   // ǅ
  CHECK(CategoryOf(0xE000) == G::kCo);
  CHECK(CategoryOf(0x0378) == G::kCn);  // unassigned
  CHECK(CategoryOf(0x10FFFF) == G::kCn);
}

TEST_CASE("white space and word characters") {
  for (char32_t c : {0x09, 0x0A, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2028, 0x3000}) {
    CHECK(IsWhiteSpace(c));
  }
  for (char32_t c : {0x200B, 0xFEFF, 0x61, 0x180E}) CHECK_FALSE(IsWhiteSpace(c));
  CHECK(IsWordChar('_'));
  CHECK(IsWordChar(0x24B6));        // Ⓐ: a symbol that \w includes
  CHECK_FALSE(IsWordChar(0x09F4));  // a Bengali fraction that \w excludes
  CHECK_FALSE(IsWordChar('-'));
  CHECK(IsAddedTokenWordChar(0x200D));
  CHECK_FALSE(IsWordChar(0x200D));
  CHECK(IsWordChar(0x00B2));
  CHECK_FALSE(IsAddedTokenWordChar(0x00B2));
  CHECK(IsNumeric(0x00BD));
  CHECK_FALSE(IsNumeric('x'));
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

TEST_CASE("NFC composes, reorders marks and handles Hangul") {
  CHECK(ToNfc("plain ASCII") == "plain ASCII");
  CHECK(ToNfc("cafe\u0301") == "caf\u00e9");
  CHECK(ToNfc("a\u0302\u0323") == "\u1ead");       // marks reordered, then composed
  CHECK(ToNfc("\u212b") == "\u00c5");               // singleton
  CHECK(ToNfc("\u0958") == "\u0915\u093c");         // composition exclusion stays apart
  CHECK(ToNfc("\u1100\u1161\u11a8") == "\uac01");  // Hangul L V T
  CHECK(ToNfc("\u0301x") == "\u0301x");              // leading mark has nothing to join
}

}  // namespace
}  // namespace xlserve::tokenizer_internal
