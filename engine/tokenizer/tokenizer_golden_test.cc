// The tokenizer against ids and decodings recorded from HF `tokenizers`.
#include <string>
#include <vector>

#include "engine/tokenizer/streaming_decoder.h"
#include "engine/tokenizer/test_support.h"

namespace xlserve {
namespace {

using tokenizer_test::GoldenTokenizer;
using tokenizer_test::IsValidUtf8;
using tokenizer_test::LoadGolden;

std::string SkipSpecialDecoding(const nlohmann::json& entry) {
  // The generator stores decoded_skip_special only where it differs from decoded.
  return entry.value("decoded_skip_special", entry["decoded"].get<std::string>());
}

// Streams `ids` one at a time; checks every chunk is whole UTF-8 and returns the concatenation.
std::string StreamAll(const Tokenizer& tokenizer, const std::vector<int>& ids, bool skip_special) {
  StreamingDecoder decoder(tokenizer, skip_special);
  std::string text;
  for (int id : ids) {
    auto chunk = decoder.Push(id);
    REQUIRE(chunk.ok());
    CHECK(IsValidUtf8(*chunk));
    text += *chunk;
  }
  const std::string rest = decoder.Flush();
  CHECK(IsValidUtf8(rest));
  return text + rest;
}

// `prefix` is what decoding adds in front of a text (add_prefix_space adds a space).
// `round_trip` is false where normalization changes texts, so decodings equal HF's but not the
// input.
void CheckGolden(const std::string& name, std::size_t min_cases, const std::string& prefix = "",
                 bool round_trip = true) {
  const nlohmann::json golden = LoadGolden(name);
  REQUIRE(golden["format_version"] == 1);
  const auto tokenizer = GoldenTokenizer(golden);
  const auto& cases = golden["cases"];
  REQUIRE(cases.size() >= min_cases);
  std::size_t round_trips = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int> expected = c["ids"].get<std::vector<int>>();
    INFO(name << " text: " << nlohmann::json(text).dump());
    auto ids = tokenizer->Encode(text);
    REQUIRE(ids.ok());
    CHECK(*ids == expected);
    auto decoded = tokenizer->Decode(expected);
    REQUIRE(decoded.ok());
    CHECK(*decoded == c["decoded"].get<std::string>());
    auto skipped = tokenizer->Decode(expected, /*skip_special=*/true);
    REQUIRE(skipped.ok());
    CHECK(*skipped == SkipSpecialDecoding(c));
    CHECK(StreamAll(*tokenizer, expected, false) == c["decoded"].get<std::string>());
    if (*decoded == text || *decoded == prefix + text) ++round_trips;
  }
  // Only texts whose whitespace an lstrip special token absorbs may fail to round-trip.
  if (round_trip) CHECK(round_trips + 2 >= cases.size());

  for (const auto& c : golden["decode_cases"]) {
    const std::vector<int> ids = c["ids"].get<std::vector<int>>();
    INFO(name << " decode ids: " << c["ids"].dump());
    auto decoded = tokenizer->Decode(ids);
    REQUIRE(decoded.ok());
    CHECK(*decoded == c["decoded"].get<std::string>());
    auto skipped = tokenizer->Decode(ids, /*skip_special=*/true);
    REQUIRE(skipped.ok());
    CHECK(*skipped == SkipSpecialDecoding(c));
    CHECK(StreamAll(*tokenizer, ids, false) == c["decoded"].get<std::string>());
    CHECK(StreamAll(*tokenizer, ids, true) == SkipSpecialDecoding(c));
  }
}

TEST_CASE("GPT-2 style ByteLevel pre-tokenizer matches HF ids and decodings") {
  CheckGolden("gpt2", 200);
}

TEST_CASE("Llama-3 style Split + ByteLevel(use_regex=false) matches HF ids and decodings") {
  CheckGolden("llama3", 200);
}

TEST_CASE("ByteLevel add_prefix_space matches HF ids and decodings") {
  CheckGolden("prefix_space", 50, " ");
}

TEST_CASE("NFC normalizer matches HF ids and decodings") {
  CheckGolden("nfc", 100, "", /*round_trip=*/false);
}

TEST_CASE("token lookups agree with the vocab and added tokens") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  REQUIRE(tokenizer->TokenToId("<|endoftext|>") == 0);
  REQUIRE(tokenizer->TokenToId("<|pad|>") == 1);
  REQUIRE(tokenizer->IdToToken(0) == "<|endoftext|>");
  REQUIRE(tokenizer->IsSpecial(0));
  const std::optional<int> code = tokenizer->TokenToId("[[code]]");
  REQUIRE(code.has_value());
  REQUIRE_FALSE(tokenizer->IsSpecial(*code));
  REQUIRE(tokenizer->vocab_size() == 1203);  // 1200 trained + 3 plain added tokens
  REQUIRE(tokenizer->TokenToId("no such token") == std::nullopt);
  REQUIRE(tokenizer->IdToToken(-1).empty());
  REQUIRE(tokenizer->IdToToken(tokenizer->vocab_size()).empty());
  // No template post-processor: <|endoftext|> serves as both, by convention.
  REQUIRE(tokenizer->bos_id() == 0);
  REQUIRE(tokenizer->eos_id() == 0);
}

}  // namespace
}  // namespace xlserve
