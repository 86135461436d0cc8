// Behaviour beyond the golden files: speed on large inputs, long words, components built from
// hand-written tokenizer.json fragments, thread safety of the shared cache.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/internal/byte_level.h"
#include "engine/tokenizer/test_support.h"

namespace xlserve {
namespace {

using nlohmann::json;

// The time bound that separates linear from quadratic encoding here, stretched for slower
// (sanitizer) builds by $XLSERVE_TEST_TIME_SCALE.
double TimeLimitSeconds() {
  const char* scale = std::getenv("XLSERVE_TEST_TIME_SCALE");
  return 0.5 * (scale ? std::max(1.0, std::atof(scale)) : 1.0);
}

std::string MixedText(std::size_t bytes) {
  const std::vector<std::string> parts = {
      "def encode(self, text):\n    return [ord(c) for c in text]\r\n",
      "The quick brown fox ",
      "你好，世界！",
      "Привет, мир! ",
      "👨‍👩‍👧‍👦 ",
      "   \t  ",
      "x = 3.14159 * r ** 2; ",
      "<|endoftext|>",
      "नमस्ते दुनिया ",
      "I'm sure they'll see it's done. ",
  };
  std::string text;
  for (std::size_t i = 0; text.size() < bytes; ++i) text += parts[(i * 7) % parts.size()];
  return text;
}

TEST_CASE("100 KB of mixed text encodes well under a second and round-trips") {
  for (const char* name : {"gpt2", "llama3"}) {
    const auto tokenizer = tokenizer_test::LoadGoldenTokenizer(name);
    const std::string text = MixedText(100 * 1024);
    const auto start = std::chrono::steady_clock::now();
    auto ids = tokenizer->Encode(text);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    REQUIRE(ids.ok());
    INFO(name << ": " << seconds << " s for " << text.size() << " bytes");
    CHECK(seconds < TimeLimitSeconds());
    CHECK(*tokenizer->Decode(*ids) == text);
  }
}

TEST_CASE("a very long word without spaces encodes and round-trips") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  std::string word;
  while (word.size() < 200000) word += "supercalifragilisticexpialidocious";
  const auto start = std::chrono::steady_clock::now();
  auto ids = tokenizer->Encode(word);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(ids.ok());
  CHECK(seconds < TimeLimitSeconds());
  CHECK(ids->size() < word.size());  // merges happened
  CHECK(*tokenizer->Decode(*ids) == word);
}

TEST_CASE("concurrent Encode calls agree") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("llama3");
  const std::string text = MixedText(20000);
  const std::vector<int> expected = *tokenizer->Encode(text);
  std::vector<std::vector<int>> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { results[t] = *tokenizer->Encode(text); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& r : results) CHECK(r == expected);
}

// A tiny byte-level model: the 256 byte tokens plus merges for "ab" and "abc".
json TinyConfig(const json& pre_tokenizer) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    vocab[tokenizer_internal::BytesToVocabString(std::string(1, static_cast<char>(b)))] = b;
  }
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  return json{{"model",
               {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", json::array({"a b", "ab c"})},
                {"ignore_merges", false}}},
              {"pre_tokenizer", pre_tokenizer},
              {"decoder", {{"type", "ByteLevel"}}},
              {"added_tokens", json::array()}};
}

std::vector<std::string> Pieces(const Tokenizer& tokenizer, const std::string& text) {
  auto ids = tokenizer.Encode(text);
  REQUIRE(ids.ok());
  std::vector<std::string> out;
  for (int id : *ids) out.emplace_back(tokenizer.IdToToken(id));
  return out;
}

TEST_CASE("Split behaviours and Digits cut text as HF does") {
  const json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  const auto build = [&](const json& split) {
    auto tokenizer = Tokenizer::FromJson(
        TinyConfig({{"type", "Sequence"}, {"pretokenizers", {split, byte_level}}}).dump());
    INFO(tokenizer.status().ToString());
    REQUIRE(tokenizer.ok());
    return std::move(*tokenizer);
  };
  using Strings = std::vector<std::string>;
  const json dash = {{"String", "-"}};
  // "ab-c": merging "ab"+"c" into "abc" only happens when the dash is not between them.
  CHECK(Pieces(*build({{"type", "Split"}, {"pattern", dash}, {"behavior", "Removed"}}), "ab-c") ==
        Strings{"ab", "c"});
  CHECK(
      Pieces(
          *build({{"type", "Split"}, {"pattern", dash}, {"behavior", "Removed"}, {"invert", true}}),
          "ab-c") == Strings{"-"});
  CHECK(Pieces(*build({{"type", "Split"},
                       {"pattern", {{"Regex", "-+"}}},
                       {"behavior", "MergedWithPrevious"}}),
               "ab--c") == Strings{"ab", "-", "-", "c"});
  CHECK(Pieces(*build({{"type", "Split"}, {"pattern", dash}, {"behavior", "MergedWithNext"}}),
               "ab-abc") == Strings{"ab", "-", "abc"});
  CHECK(Pieces(
            *build(
                {{"type", "Split"}, {"pattern", {{"Regex", "b"}}}, {"behavior", "MergedWithNext"}}),
            "abc") == Strings{"a", "b", "c"});
  CHECK(Pieces(*build({{"type", "Split"},
                       {"pattern", {{"Regex", "b"}}},
                       {"behavior", "MergedWithPrevious"}}),
               "abc") == Strings{"ab", "c"});
  CHECK(Pieces(*build({{"type", "Digits"}, {"individual_digits", false}}), "ab12c") ==
        Strings{"ab", "1", "2", "c"});
}

TEST_CASE("ignore_merges takes whole words straight from the vocab") {
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  json config = TinyConfig(byte_level);
  // Without the "a b" merge, "abc" cannot be reached by merging...
  config["model"]["merges"] = json::array({"ab c"});
  auto plain = Tokenizer::FromJson(config.dump());
  REQUIRE(plain.ok());
  CHECK(Pieces(**plain, "abc") == std::vector<std::string>{"a", "b", "c"});
  // ...but ignore_merges finds it as a whole word.
  config["model"]["ignore_merges"] = true;
  auto direct = Tokenizer::FromJson(config.dump());
  REQUIRE(direct.ok());
  CHECK(Pieces(**direct, "abc") == std::vector<std::string>{"abc"});
}

TEST_CASE("bos and eos come from a TemplateProcessing post-processor when present") {
  json config = tokenizer_test::GoldenConfig("gpt2");
  config["post_processor"] = {{"type", "TemplateProcessing"},
                              {"single",
                               {{{"SpecialToken", {{"id", "<|pad|>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                {{"SpecialToken", {{"id", "<|mask|>"}, {"type_id", 0}}}}}}};
  auto tokenizer = Tokenizer::FromJson(config.dump());
  REQUIRE(tokenizer.ok());
  CHECK((*tokenizer)->bos_id() == 1);
  CHECK((*tokenizer)->eos_id() == 2);
  // The post-processor never adds tokens to Encode's output.
  CHECK(*(*tokenizer)->Encode("x") == *tokenizer_test::LoadGoldenTokenizer("gpt2")->Encode("x"));
}

}  // namespace
}  // namespace xlserve
