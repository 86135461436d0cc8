#include "engine/tokenizer/streaming_decoder.h"

#include <string>
#include <vector>

#include "engine/tokenizer/internal/byte_level.h"
#include "engine/tokenizer/test_support.h"

namespace xlserve {
namespace {

using tokenizer_test::IsValidUtf8;

// Ids of the single-byte tokens spelling `bytes`, so that every multi-byte character is split
// across tokens.
std::vector<int> ByteIds(const Tokenizer& tokenizer, std::string_view bytes) {
  std::vector<int> ids;
  for (char b : bytes) {
    const std::string token = tokenizer_internal::BytesToVocabString(std::string(1, b));
    const std::optional<int> id = tokenizer.TokenToId(token);
    REQUIRE(id.has_value());
    ids.push_back(*id);
  }
  return ids;
}

TEST_CASE("streaming holds back partial characters until they complete") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  StreamingDecoder decoder(*tokenizer);
  const std::string emoji = "\xF0\x9F\x98\x80";                                    // U+1F600
  const std::vector<int> ids = ByteIds(*tokenizer, "a" + emoji + "\xE4\xBD\xA0");  // a, 😀, 你
  std::vector<std::string> chunks;
  for (int id : ids) {
    auto chunk = decoder.Push(id);
    REQUIRE(chunk.ok());
    chunks.push_back(*chunk);
  }
  REQUIRE(chunks == std::vector<std::string>{"a", "", "", "", emoji, "", "", "\xE4\xBD\xA0"});
  REQUIRE(decoder.Flush().empty());
}

TEST_CASE("streaming output concatenates to Decode for byte-split scripts and emoji") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("llama3");
  const std::vector<std::string> texts = {
      "👨‍👩‍👧‍👦 family", "你好，世界", "नमस्ते",
      "🏳️‍🌈 and 👍🏽",      "Z̤͔ͧa",         "e\xCC\x81",
  };
  for (const std::string& text : texts) {
    INFO(text);
    for (const std::vector<int>& ids : {ByteIds(*tokenizer, text), *tokenizer->Encode(text)}) {
      StreamingDecoder decoder(*tokenizer);
      std::string streamed;
      for (int id : ids) {
        auto chunk = decoder.Push(id);
        REQUIRE(chunk.ok());
        REQUIRE(IsValidUtf8(*chunk));
        streamed += *chunk;
      }
      streamed += decoder.Flush();
      REQUIRE(streamed == text);
      REQUIRE(streamed == *tokenizer->Decode(ids));
    }
  }
}

TEST_CASE("streaming renders invalid byte sequences as Decode does") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  // A truncated 4-byte sequence followed by ASCII, a stray continuation byte, an overlong lead,
  // and a truncated sequence left at the end.
  const std::string bytes = "\xF0\x9F\x98x\x80y\xC0\xAFz\xE4\xBD";
  const std::vector<int> ids = ByteIds(*tokenizer, bytes);
  StreamingDecoder decoder(*tokenizer);
  std::string streamed;
  for (int id : ids) {
    auto chunk = decoder.Push(id);
    REQUIRE(chunk.ok());
    REQUIRE(IsValidUtf8(*chunk));
    streamed += *chunk;
  }
  const std::string tail = decoder.Flush();
  REQUIRE(tail == "\xEF\xBF\xBD");
  streamed += tail;
  const std::string r = "\xEF\xBF\xBD";
  REQUIRE(streamed == r + "x" + r + "y" + r + r + "z" + r);
  REQUIRE(streamed == *tokenizer->Decode(ids));
}

TEST_CASE("streaming rejects an invalid id and keeps its state") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  StreamingDecoder decoder(*tokenizer);
  const std::vector<int> ids = ByteIds(*tokenizer, "\xE4\xBD\xA0");
  REQUIRE(decoder.Push(ids[0])->empty());
  REQUIRE_FALSE(decoder.Push(tokenizer->vocab_size()).ok());
  REQUIRE_FALSE(decoder.Push(-1).ok());
  REQUIRE(decoder.Push(ids[1])->empty());
  REQUIRE(*decoder.Push(ids[2]) == "\xE4\xBD\xA0");
}

TEST_CASE("streaming with skip_special drops special tokens only") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  const std::vector<int> ids = *tokenizer->Encode("a<|endoftext|>[[code]]b");
  StreamingDecoder decoder(*tokenizer, /*skip_special=*/true);
  std::string streamed;
  for (int id : ids) streamed += *decoder.Push(id);
  streamed += decoder.Flush();
  REQUIRE(streamed == "a[[code]]b");
}

}  // namespace
}  // namespace xlserve
