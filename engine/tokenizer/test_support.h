// Helpers shared by the tokenizer tests: golden-file loading and UTF-8 validity checks.
#pragma once

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tokenizer/internal/utf8.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace xlserve::tokenizer_test {

// Golden data lives in the runfiles tree, whose root is the test's working directory.
inline const char* kGoldenDir = "tests/golden/tokenizer/";

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

inline nlohmann::json LoadGolden(const std::string& name) {
  return nlohmann::json::parse(ReadFile(std::string(kGoldenDir) + name + "/golden.json"));
}

inline nlohmann::json GoldenConfig(const std::string& name) {
  return nlohmann::json::parse(ReadFile(std::string(kGoldenDir) + name + "/tokenizer.json"));
}

// The tokenizer a golden file was made with: its "tokenizer" file with the top-level keys of
// "config_override" (if any) replaced.
inline std::unique_ptr<Tokenizer> GoldenTokenizer(const nlohmann::json& golden) {
  nlohmann::json config = nlohmann::json::parse(
      ReadFile(std::string(kGoldenDir) + golden["tokenizer"].get<std::string>()));
  if (golden.contains("config_override")) {
    for (const auto& [key, value] : golden["config_override"].items()) config[key] = value;
  }
  auto tokenizer = Tokenizer::FromJson(config.dump());
  INFO(tokenizer.status().ToString());
  REQUIRE(tokenizer.ok());
  return std::move(*tokenizer);
}

inline std::unique_ptr<Tokenizer> LoadGoldenTokenizer(const std::string& name) {
  auto tokenizer = Tokenizer::FromFile(std::string(kGoldenDir) + name + "/tokenizer.json");
  INFO(tokenizer.status().ToString());
  REQUIRE(tokenizer.ok());
  return std::move(*tokenizer);
}

inline bool IsValidUtf8(const std::string& text) {
  std::vector<char32_t> unused;
  return tokenizer_internal::DecodeUtf8(text, &unused, nullptr).ok();
}

}  // namespace xlserve::tokenizer_test
