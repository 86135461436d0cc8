// Bad files, unsupported components and bad ids are errors that name the problem.
#include <string>
#include <vector>

#include "engine/tokenizer/test_support.h"

namespace xlserve {
namespace {

using nlohmann::json;

json GoldenConfig() { return tokenizer_test::GoldenConfig("gpt2"); }

// Loads `config` and expects failure with `code` and a message containing `fragment`.
void ExpectLoadError(const json& config, absl::StatusCode code, const std::string& fragment) {
  auto tokenizer = Tokenizer::FromJson(config.dump());
  REQUIRE_FALSE(tokenizer.ok());
  INFO(tokenizer.status().ToString());
  CHECK(tokenizer.status().code() == code);
  CHECK(std::string(tokenizer.status().message()).find(fragment) != std::string::npos);
}

TEST_CASE("a missing file is NotFound and names the path") {
  auto tokenizer = Tokenizer::FromFile("/nonexistent/dir/tokenizer.json");
  REQUIRE_FALSE(tokenizer.ok());
  CHECK(tokenizer.status().code() == absl::StatusCode::kNotFound);
  CHECK(std::string(tokenizer.status().message()).find("/nonexistent/dir/tokenizer.json") !=
        std::string::npos);
}

TEST_CASE("malformed JSON is InvalidArgument") {
  for (const char* text : {"", "{", "[1, 2]", "{\"model\": 3}", "{\"model\": {\"vocab\": {}}"}) {
    INFO(text);
    auto tokenizer = Tokenizer::FromJson(text);
    REQUIRE_FALSE(tokenizer.ok());
    CHECK(tokenizer.status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("sparse ids are refused before any table is sized by them (fuzz finding: 3 GB from a 23 KB file)") {
  json config = GoldenConfig();
  config["model"]["vocab"]["zzz-far-away"] = 500000000;
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "ids this sparse are refused");
  config = GoldenConfig();
  config["added_tokens"].push_back({{"id", 400000000}, {"content", "<far>"}, {"single_word", false},
                                    {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                                    {"special", true}});
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "ids this sparse are refused");
  // Reserved room above the defined ids stays accepted.
  config = GoldenConfig();
  config["added_tokens"].push_back({{"id", static_cast<int>(config["model"]["vocab"].size()) + 1000},
                                    {"content", "<reserved>"}, {"single_word", false}, {"lstrip", false},
                                    {"rstrip", false}, {"normalized", false}, {"special", true}});
  CHECK(Tokenizer::FromJson(config.dump()).ok());
}

TEST_CASE("unsupported components are named") {
  json config = GoldenConfig();
  config["model"]["type"] = "WordPiece";
  ExpectLoadError(config, absl::StatusCode::kUnimplemented, "model type \"WordPiece\"");

  config = GoldenConfig();
  config["normalizer"] = {{"type", "NFKC"}};
  ExpectLoadError(config, absl::StatusCode::kUnimplemented, "normalizer \"NFKC\"");

  config = GoldenConfig();
  config["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  ExpectLoadError(config, absl::StatusCode::kUnimplemented, "\"Metaspace\"");

  config = GoldenConfig();
  config["pre_tokenizer"] = {
      {"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}}}};
  ExpectLoadError(config, absl::StatusCode::kUnimplemented, "no ByteLevel step");

  config = GoldenConfig();
  config["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "(?<=x"}}}, {"behavior", "Isolated"}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "pretokenizers[0].pattern");

  config = GoldenConfig();
  config["decoder"] = {{"type", "WordPiece"}};
  ExpectLoadError(config, absl::StatusCode::kUnimplemented, "decoder \"WordPiece\"");

  config = GoldenConfig();
  config["model"]["dropout"] = 0.1;
  ExpectLoadError(config, absl::StatusCode::kUnimplemented, "model.dropout");

  config = GoldenConfig();
  config["model"]["byte_fallback"] = true;
  ExpectLoadError(config, absl::StatusCode::kUnimplemented, "model.byte_fallback");
}

TEST_CASE("inconsistent model data is named") {
  json config = GoldenConfig();
  config["model"]["merges"].push_back(json::array({"Ġ", "nonexistent-token"}));
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "missing from the vocab");

  config = GoldenConfig();
  config["model"]["merges"][0] = "only-one-part";
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "model.merges[0]");

  config = GoldenConfig();
  config["model"]["vocab"]["bad"] = "seven";
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "model.vocab[\"bad\"]");

  config = GoldenConfig();
  config["added_tokens"][0].erase("id");
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "added_tokens[0]");

  config = GoldenConfig();
  config["pre_tokenizer"]["use_regex"] = "yes";  // wrong type inside a known component
  ExpectLoadError(config, absl::StatusCode::kInvalidArgument, "tokenizer.json");
}

TEST_CASE("ids outside the vocabulary are errors in Decode") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  for (int bad : {-1, tokenizer->vocab_size(), 1 << 30}) {
    const std::vector<int> ids = {5, bad};
    auto text = tokenizer->Decode(ids);
    REQUIRE_FALSE(text.ok());
    CHECK(text.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(text.status().message()).find(std::to_string(bad)) != std::string::npos);
  }
}

TEST_CASE("invalid UTF-8 input to Encode is an error") {
  const auto tokenizer = tokenizer_test::LoadGoldenTokenizer("gpt2");
  auto ids = tokenizer->Encode("ok \xC3 then");
  REQUIRE_FALSE(ids.ok());
  CHECK(ids.status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace xlserve
