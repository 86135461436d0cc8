#include "engine/model/checkpoint.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/model/testing/safetensors_writer.h"

namespace xlserve {
namespace {

using testing::NamedTensor;
using testing::ToFloats;

std::vector<NamedTensor> Tensors() {
  return {{"a", DType::kF32, {2}, {1, 2}},
          {"b", DType::kBF16, {1, 2}, {3, 4}},
          {"c", DType::kF16, {3}, {5, 6, 7}},
          {"d", DType::kF32, {1}, {8}}};
}

std::string StatusText(const absl::Status& status) { return std::string(status.message()); }

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST_CASE("a directory with model.safetensors opens as one file", "[checkpoint]") {
  const std::string dir = testing::MakeTempDir("checkpoint_single");
  REQUIRE(testing::WriteSafetensors(dir + "/model.safetensors", Tensors()).ok());
  auto checkpoint = Checkpoint::OpenDirectory(dir);
  REQUIRE(checkpoint.ok());
  CHECK((*checkpoint)->source() == dir + "/model.safetensors");
  CHECK((*checkpoint)->names() == std::vector<std::string>{"a", "b", "c", "d"});
  CHECK((*checkpoint)->files().size() == 1);
  CHECK(ToFloats(*(*checkpoint)->Find("c")) == std::vector<float>{5, 6, 7});
  auto absent = (*checkpoint)->Find("z");
  CHECK(absent.status().code() == absl::StatusCode::kNotFound);
  CHECK(StatusText(absent.status()) == "tensor z not found in checkpoint " + dir + "/model.safetensors");
}

TEST_CASE("a sharded checkpoint opens every shard once and finds tensors across them", "[checkpoint]") {
  const std::string dir = testing::MakeTempDir("checkpoint_sharded");
  REQUIRE(testing::WriteShardedSafetensors(dir, Tensors(), 3).ok());
  REQUIRE(std::filesystem::exists(dir + "/model-00003-of-00003.safetensors"));
  auto checkpoint = Checkpoint::OpenDirectory(dir);
  REQUIRE(checkpoint.ok());
  CHECK((*checkpoint)->source() == dir + "/model.safetensors.index.json");
  CHECK((*checkpoint)->files().size() == 3);
  CHECK((*checkpoint)->names() == std::vector<std::string>{"a", "b", "c", "d"});
  for (const NamedTensor& t : Tensors()) {
    INFO(t.name);
    auto view = (*checkpoint)->Find(t.name);
    REQUIRE(view.ok());
    CHECK(view->dtype == t.dtype);
    CHECK(view->shape == t.shape);
    CHECK(ToFloats(*view) == t.values);
  }
}

TEST_CASE("model.safetensors wins over an index, as in transformers", "[checkpoint]") {
  const std::string dir = testing::MakeTempDir("checkpoint_both");
  REQUIRE(testing::WriteShardedSafetensors(dir, Tensors(), 2).ok());
  REQUIRE(testing::WriteSafetensors(dir + "/model.safetensors", {{"only", DType::kF32, {1}, {1}}}).ok());
  auto checkpoint = Checkpoint::OpenDirectory(dir);
  REQUIRE(checkpoint.ok());
  CHECK((*checkpoint)->names() == std::vector<std::string>{"only"});
}

TEST_CASE("checkpoint errors name the directory, index, shard and tensor", "[checkpoint]") {
  const std::string dir = testing::MakeTempDir("checkpoint_errors");
  const std::string index = dir + "/model.safetensors.index.json";

  auto empty = Checkpoint::OpenDirectory(dir);
  CHECK(empty.status().code() == absl::StatusCode::kNotFound);
  CHECK(StatusText(empty.status()) == "no model.safetensors or model.safetensors.index.json in " + dir);

  REQUIRE(testing::WriteShardedSafetensors(dir, Tensors(), 2).ok());
  std::filesystem::remove(dir + "/model-00002-of-00002.safetensors");
  auto missing_shard = Checkpoint::OpenDirectory(dir);
  CHECK(missing_shard.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(StatusText(missing_shard.status()),
             Catch::StartsWith("shard model-00002-of-00002.safetensors of " + index +
                               " (first listed for tensor c): cannot open safetensors file " + dir +
                               "/model-00002-of-00002.safetensors"));

  struct Case {
    std::string index_text;
    std::string message;
  };
  const Case cases[] = {
      {"{", "shard index " + index + " is not valid JSON: "},
      {R"({"metadata": {}})", "shard index " + index + " has no \"weight_map\" object"},
      {R"([1])", "shard index " + index + " has no \"weight_map\" object"},
      {R"({"weight_map": {"a": 7}})", "shard index " + index + ": weight_map entry of a is not a string"},
      {R"({"weight_map": {"a": "../model-00001-of-00002.safetensors"}})",
       "shard index " + index + ": tensor a names shard \"../model-00001-of-00002.safetensors\", not a plain file name"},
      {R"({"weight_map": {"c": "model-00001-of-00002.safetensors"}})",
       "shard index " + index + " puts tensor c in model-00001-of-00002.safetensors, which does not hold it"},
  };
  for (const Case& k : cases) {
    WriteText(index, k.index_text);
    INFO(k.index_text);
    auto checkpoint = Checkpoint::OpenIndex(index);
    REQUIRE_FALSE(checkpoint.ok());
    CHECK_THAT(StatusText(checkpoint.status()), Catch::StartsWith(k.message));
  }

  // A shard that is itself corrupt reports both the shard and the safetensors problem.
  WriteText(dir + "/model-00001-of-00002.safetensors", "tiny");
  WriteText(index, R"({"weight_map": {"a": "model-00001-of-00002.safetensors"}})");
  auto corrupt = Checkpoint::OpenIndex(index);
  CHECK_THAT(StatusText(corrupt.status()), Catch::Contains("shard model-00001-of-00002.safetensors of " + index) &&
                                               Catch::Contains("is truncated: 4 bytes"));
}

}  // namespace
}  // namespace xlserve
