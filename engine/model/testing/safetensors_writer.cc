#include "engine/model/testing/safetensors_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/checkpoint_layout.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace xlserve::testing {
namespace {

using json = nlohmann::json;

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void AppendEncoded(const NamedTensor& t, std::string& out) {
  for (float v : t.values) {
    switch (t.dtype) {
      case DType::kF32: {
        char bytes[4];
        std::memcpy(bytes, &v, 4);
        out.append(bytes, 4);  // the hosts we build for are little-endian, like the format
        break;
      }
      case DType::kBF16:
      case DType::kF16: {
        const uint16_t h = t.dtype == DType::kBF16 ? FloatToBF16(v) : FloatToF16(v);
        out.push_back(static_cast<char>(h & 0xff));
        out.push_back(static_cast<char>(h >> 8));
        break;
      }
    }
  }
}

absl::Status WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// Uniform in [lo, hi) from the top 24 bits, so values do not depend on the library's
// distribution implementation.
float Uniform(std::mt19937& rng, float lo, float hi) {
  return lo + (hi - lo) * static_cast<float>(rng() >> 8) * (1.0f / 16777216.0f);
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string MakeTempDir(const std::string& label) {
  const char* root = std::getenv("TEST_TMPDIR");
  std::string pattern = (std::filesystem::path(root != nullptr ? root : std::filesystem::temp_directory_path().c_str()) /
                         (label + ".XXXXXX"))
                            .string();
  if (mkdtemp(pattern.data()) == nullptr) return "";
  return pattern;
}

uint16_t FloatToF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // infinity or NaN (keep NaN quiet)
    return sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u);
  }
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (magnitude < 0x38800000u) {  // below 2^-14: a half subnormal, in units of 2^-24
    float abs_value;
    std::memcpy(&abs_value, &magnitude, 4);
    // Scaling by a power of two is exact; nearbyint rounds half to even. 1024 lands on the
    // smallest normal, which has the same bit pattern.
    return sign | static_cast<uint16_t>(std::nearbyint(abs_value * 16777216.0f));
  }
  const uint32_t mantissa = magnitude & 0x7fffffu;
  const int32_t exponent = static_cast<int32_t>(magnitude >> 23) - 127 + 15;
  uint32_t half = (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry bumps the exponent
  return sign | static_cast<uint16_t>(half);
}

std::vector<float> ToFloats(const TensorView& view) {
  if (!view.present()) return {};
  std::vector<float> out(view.numel());
  for (size_t i = 0; i < out.size(); ++i) {
    switch (view.dtype) {
      case DType::kF32: std::memcpy(&out[i], static_cast<const char*>(view.data) + 4 * i, 4); break;
      case DType::kBF16:
      case DType::kF16: {
        uint16_t bits;
        std::memcpy(&bits, static_cast<const char*>(view.data) + 2 * i, 2);
        out[i] = view.dtype == DType::kBF16 ? BF16ToFloat(bits) : F16ToFloat(bits);
        break;
      }
    }
  }
  return out;
}

float RoundTripThrough(DType dtype, float value) {
  switch (dtype) {
    case DType::kF32: return value;
    case DType::kBF16: return BF16ToFloat(FloatToBF16(value));
    case DType::kF16: return F16ToFloat(FloatToF16(value));
  }
  return value;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const NamedTensor& t : tensors) {
    if (!seen.insert(t.name).second) return absl::InvalidArgumentError("duplicate tensor " + t.name);
    if (static_cast<int64_t>(t.values.size()) != Numel(t.shape)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", t.name, " has ", t.values.size(),
                                                     " values for ", Numel(t.shape), " elements"));
    }
  }
  // Wider elements first: with an 8-aligned data start, every tensor is then aligned.
  std::vector<const NamedTensor*> order;
  for (const NamedTensor& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const NamedTensor* a, const NamedTensor* b) {
    return DTypeSize(a->dtype) > DTypeSize(b->dtype);
  });

  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const NamedTensor* t : order) {
    const size_t begin = data.size();
    AppendEncoded(*t, data);
    header[t->name] = {{"dtype", std::string(DTypeName(t->dtype))},
                       {"shape", t->shape},
                       {"data_offsets", {begin, data.size()}}};
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string bytes;
  uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  bytes += header_text;
  bytes += data;
  return WriteFile(path, bytes);
}

absl::Status WriteShardedSafetensors(const std::string& dir, const std::vector<NamedTensor>& tensors,
                                     int num_shards) {
  if (num_shards < 1) return absl::InvalidArgumentError("num_shards must be >= 1");
  json weight_map = json::object();
  size_t next = 0;
  for (int shard = 0; shard < num_shards; ++shard) {
    // Contiguous, near-equal runs of tensors per shard, like transformers' size-based split.
    const size_t end = tensors.size() * (shard + 1) / num_shards;
    std::vector<NamedTensor> part(tensors.begin() + next, tensors.begin() + end);
    next = end;
    const std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors", shard + 1, num_shards);
    RETURN_IF_ERROR(WriteSafetensors((std::filesystem::path(dir) / name).string(), part, {{"format", "pt"}}));
    for (const NamedTensor& t : part) weight_map[t.name] = name;
  }
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  return WriteFile((std::filesystem::path(dir) / "model.safetensors.index.json").string(), index.dump(2));
}

std::vector<NamedTensor> RandomModelTensors(const ModelConfig& config, uint32_t seed, DType dtype) {
  std::mt19937 rng(seed);
  std::vector<NamedTensor> out;
  for (const ExpectedTensor& want : ExpectedCheckpointTensors(config)) {
    NamedTensor t{want.name, dtype, want.shape, std::vector<float>(Numel(want.shape))};
    const bool is_bias = EndsWith(t.name, ".bias");
    const bool forget_bias = EndsWith(t.name, ".fgate_preact.bias");
    const bool fused_gate_bias = EndsWith(t.name, ".ifgate_preact.bias");  // [igate; fgate]
    for (size_t i = 0; i < t.values.size(); ++i) {
      float& v = t.values[i];
      if (forget_bias || (fused_gate_bias && i >= static_cast<size_t>(config.num_heads))) {
        v = Uniform(rng, 3.0f, 6.0f);
      } else if (is_bias) {
        v = Uniform(rng, -0.1f, 0.1f);
      } else if (want.shape.size() == 1) {
        v = 1.0f + Uniform(rng, -0.1f, 0.1f);
      } else {
        v = Uniform(rng, -1.0f, 1.0f) / std::sqrt(static_cast<float>(want.shape[1]));
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

absl::Status WriteModelDirectory(const std::string& dir, const ModelConfig& config,
                                 const std::vector<NamedTensor>& tensors) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  RETURN_IF_ERROR(WriteFile((std::filesystem::path(dir) / "config.json").string(), ModelConfigToJson(config).dump(2)));
  return WriteSafetensors((std::filesystem::path(dir) / "model.safetensors").string(), tensors);
}

}  // namespace xlserve::testing
