#include "engine/model/safetensors.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "engine/model/testing/safetensors_writer.h"

namespace xlserve {
namespace {

using testing::NamedTensor;
using testing::ToFloats;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
}

// A file with the given header text (length prefix computed) followed by `data_bytes` bytes.
void WriteRaw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((uint64_t{header.size()} >> (8 * i)) & 0xff));
  bytes += header;
  bytes.append(data_bytes, '\0');
  WriteAll(path, bytes);
}

std::string OpenError(const std::string& path) {
  auto file = SafetensorsFile::Open(path);
  return file.ok() ? std::string("OK") : std::string(file.status().message());
}

struct Fixture {
  std::string dir = testing::MakeTempDir("safetensors");
  std::string path = dir + "/t.safetensors";
};

const std::vector<NamedTensor>& SampleTensors() {
  static const auto* tensors = new std::vector<NamedTensor>{
      {"w", DType::kF32, {2, 3}, {1, -2, 3.5f, 0.25f, 1e-3f, -7}},
      {"b", DType::kBF16, {3}, {0.5f, -1.25f, 3}},
      {"h", DType::kF16, {2, 2}, {0.1f, -0.2f, 100, 0}},
      {"scalar", DType::kF32, {}, {42}},
      {"empty", DType::kBF16, {0, 4}, {}},
  };
  return *tensors;
}

TEST_CASE_METHOD(Fixture, "round trip of F32, BF16 and F16 tensors with metadata", "[safetensors]") {
  REQUIRE(testing::WriteSafetensors(path, SampleTensors(), {{"format", "pt"}}).ok());
  auto file = SafetensorsFile::Open(path);
  REQUIRE(file.ok());
  CHECK((*file)->path() == path);
  CHECK((*file)->names() == std::vector<std::string>{"b", "empty", "h", "scalar", "w"});
  CHECK((*file)->metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  for (const NamedTensor& t : SampleTensors()) {
    INFO(t.name);
    auto view = (*file)->Find(t.name);
    REQUIRE(view.ok());
    CHECK(view->dtype == t.dtype);
    CHECK(view->shape == t.shape);
    CHECK(view->present());
    CHECK(view->numel() == static_cast<int64_t>(t.values.size()));
    std::vector<float> want;
    for (float v : t.values) want.push_back(testing::RoundTripThrough(t.dtype, v));
    CHECK(ToFloats(*view) == want);
  }
  auto absent = (*file)->Find("nope");
  CHECK(absent.status().code() == absl::StatusCode::kNotFound);
  CHECK(std::string(absent.status().message()) == "tensor nope not found in " + path);
}

TEST_CASE_METHOD(Fixture, "TensorView::Slice cuts rows and elements", "[safetensors]") {
  REQUIRE(testing::WriteSafetensors(path, SampleTensors()).ok());
  auto file = SafetensorsFile::Open(path);
  REQUIRE(file.ok());
  TensorView w = *(*file)->Find("w");
  CHECK(ToFloats(w.Slice(1, 1)) == std::vector<float>{0.25f, 1e-3f, -7});
  CHECK(w.Slice(1, 1).shape == std::vector<int64_t>{1, 3});
  TensorView b = *(*file)->Find("b");
  CHECK(ToFloats(b.Slice(1, 2)) == std::vector<float>{-1.25f, 3});
  CHECK_FALSE(w.Slice(1, 2).present());  // past the end
  CHECK_FALSE(w.Slice(-1, 1).present());
}

TEST_CASE_METHOD(Fixture, "missing file is NotFound and names the path", "[safetensors]") {
  auto file = SafetensorsFile::Open(dir + "/absent.safetensors");
  CHECK(file.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(file.status().message()),
             Catch::StartsWith("cannot open safetensors file " + dir + "/absent.safetensors"));
  CHECK(OpenError(dir) == "safetensors file " + dir + " is not a regular file");
}

TEST_CASE_METHOD(Fixture, "every truncation of a valid file is refused", "[safetensors]") {
  REQUIRE(testing::WriteSafetensors(path, SampleTensors()).ok());
  const std::string bytes = ReadAll(path);
  const std::string cut = dir + "/cut.safetensors";
  for (size_t n = 0; n < bytes.size(); ++n) {
    WriteAll(cut, bytes.substr(0, n));
    INFO("first " << n << " of " << bytes.size() << " bytes");
    REQUIRE_FALSE(SafetensorsFile::Open(cut).ok());
  }
  WriteAll(cut, bytes.substr(0, 5));
  CHECK(OpenError(cut) == "safetensors file " + cut + " is truncated: 5 bytes, too short for the 8-byte header length");
  WriteAll(cut, bytes.substr(0, bytes.size() - 1));
  CHECK_THAT(OpenError(cut), Catch::Contains("lie outside the") && Catch::Contains("truncated or corrupt file"));
}

TEST_CASE_METHOD(Fixture, "corrupt headers give errors naming the file and the tensor", "[safetensors]") {
  struct Case {
    std::string header;
    size_t data_bytes;
    std::string message;  // after "safetensors file <path>: "
  };
  const Case cases[] = {
      {"{\"a\": ", 0, "header is not valid JSON: "},
      {"[1, 2]", 0, "header is not a JSON object"},
      {R"({"a": 3})", 0, "tensor a: entry is not a JSON object"},
      {R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", 4, "tensor a: missing or non-string \"dtype\""},
      {R"({"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 8,
       "tensor a has unsupported dtype I64 (supported: F32, BF16, F16)"},
      {R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", 4, "tensor a: missing or non-array \"shape\""},
      {R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4,
       "tensor a: shape [-1] has a dimension that is not a non-negative integer"},
      {R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4,
       "tensor a: shape [1.5] has a dimension that is not a non-negative integer"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4,
       "tensor a: \"data_offsets\" must be two non-negative integers"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4,
       "tensor a: \"data_offsets\" must be two non-negative integers"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 4,
       "tensor a: data_offsets [4, 8] lie outside the 4-byte data section (truncated or corrupt file)"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4,
       "tensor a: data_offsets [4, 0] lie outside the 4-byte data section (truncated or corrupt file)"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 8,
       "tensor a: data_offsets [0, 4] hold 4 bytes, but shape [2] of F32 needs 8"},
      {R"({"a": {"dtype": "BF16", "shape": [1099511627776, 1099511627776], "data_offsets": [0, 8]}})", 8,
       "tensor a: data_offsets [0, 8] hold 8 bytes, but shape [1099511627776, 1099511627776] of BF16 needs "
       "more than the file holds"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       12, "tensors a [0, 8) and b [4, 12) overlap"},
      {R"({"__metadata__": [1]})", 0, "__metadata__ is not a JSON object"},
      {R"({"__metadata__": {"k": 1}})", 0, "__metadata__ value of \"k\" is not a string"},
      {std::string(100, '[') + std::string(100, ']'), 0, "header JSON nests deeper than 32 levels"},
  };
  for (const Case& k : cases) {
    WriteRaw(path, k.header, k.data_bytes);
    INFO(k.header);
    CHECK_THAT(OpenError(path), Catch::StartsWith("safetensors file " + path + ": " + k.message));
  }
}

TEST_CASE_METHOD(Fixture, "a header length beyond the file size is refused", "[safetensors]") {
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(0xff);
  bytes[7] = static_cast<char>(0x7f);  // ~9.2e18 bytes
  bytes += "{}";
  WriteAll(path, bytes);
  CHECK_THAT(OpenError(path), Catch::Contains("header length 9151314442816848127 exceeds the 2 bytes that follow it"));
  bytes[0] = 3;
  bytes[7] = 0;
  WriteAll(path, bytes);
  CHECK(OpenError(path) == "safetensors file " + path + ": header length 3 exceeds the 2 bytes that follow it "
                           "(truncated or corrupt file)");
}

TEST_CASE_METHOD(Fixture, "an empty header and zero-length tensors are valid", "[safetensors]") {
  WriteRaw(path, "{}", 0);
  auto file = SafetensorsFile::Open(path);
  REQUIRE(file.ok());
  CHECK((*file)->names().empty());
  // Zero-length tensors may share an offset with each other and with a neighbour's start.
  WriteRaw(path,
           R"({"e1": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
               "e2": {"dtype": "F16", "shape": [3, 0], "data_offsets": [0, 0]},
               "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
           4);
  CHECK(OpenError(path) == "OK");
}

// Random byte damage anywhere in a valid file must give OK or an error, never a crash; when
// the damaged file still opens, every view must lie inside the mapping (reading it all would
// fault otherwise).
TEST_CASE_METHOD(Fixture, "random corruption never crashes", "[safetensors]") {
  REQUIRE(testing::WriteSafetensors(path, SampleTensors()).ok());
  const std::string clean = ReadAll(path);
  const std::string damaged_path = dir + "/damaged.safetensors";
  std::mt19937 rng(1234);
  int opened = 0;
  for (int round = 0; round < 600; ++round) {
    std::string bytes = clean;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header, where damage matters; sometimes the length prefix.
      const size_t at = rng() % 3 == 0 ? rng() % 8 : rng() % bytes.size();
      bytes[at] = static_cast<char>(rng() & 0xff);
    }
    WriteAll(damaged_path, bytes);
    auto file = SafetensorsFile::Open(damaged_path);
    if (!file.ok()) continue;
    ++opened;
    for (const std::string& name : (*file)->names()) {
      auto values = ToFloats(*(*file)->Find(name));
      CHECK(values.size() == static_cast<size_t>((*file)->Find(name)->numel()));
    }
  }
  CHECK(opened > 0);  // damage to tensor data alone leaves a valid file
}

}  // namespace
}  // namespace xlserve
