// Test-only writers of safetensors files and whole model directories, so tests (here and in
// the backends) can build tiny checkpoints without Python. Files are laid out as the reference
// `safetensors` package writes them (header padded to 8 bytes, wider dtypes first, no gaps),
// so every tensor's data is aligned to its element size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/model_config.h"
#include "engine/model/tensor_view.h"
#include "engine/util/dtype.h"

namespace xlserve::testing {

// A fresh, empty directory for one test: under $TEST_TMPDIR (set by Bazel) or the system temp
// directory, named after `label` plus a unique suffix. The caller may delete it; tests usually
// leave it to Bazel's cleanup. Empty when the directory cannot be created.
std::string MakeTempDir(const std::string& label);

// One tensor to write: `values` (row-major, numel of `shape` entries) are converted to `dtype`
// with round-to-nearest-even.
struct NamedTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// The float that `value` reads back as after being stored in `dtype`.
float RoundTripThrough(DType dtype, float value);

// Every element of `view` widened to float (row-major); empty for an absent view.
std::vector<float> ToFloats(const TensorView& view);

// float -> IEEE half, round-to-nearest-even (overflow to infinity, NaN kept).
uint16_t FloatToF16(float value);

// Writes one safetensors file. Errors (value count not matching the shape, duplicate names,
// I/O failure) name the tensor or the path.
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Writes `tensors` split into `num_shards` files model-0000i-of-0000n.safetensors plus
// model.safetensors.index.json into `dir` (which must exist), in transformers' naming.
absl::Status WriteShardedSafetensors(const std::string& dir, const std::vector<NamedTensor>& tensors,
                                     int num_shards);

// Deterministic random tensors for every tensor a checkpoint of `config` holds, scaled so a
// forward pass stays numerically tame: matrices ~ U(-1, 1)/sqrt(fan_in), norm weights near 1,
// small biases, forget-gate biases in [3, 6] (long memory, as trained models have).
std::vector<NamedTensor> RandomModelTensors(const ModelConfig& config, uint32_t seed,
                                            DType dtype = DType::kF32);

// Writes `dir`/config.json (ModelConfigToJson(config)) and `dir`/model.safetensors; creates
// `dir` when missing.
absl::Status WriteModelDirectory(const std::string& dir, const ModelConfig& config,
                                 const std::vector<NamedTensor>& tensors);

}  // namespace xlserve::testing
