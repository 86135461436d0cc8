// Checkpoint: every tensor of one model directory, from a single `model.safetensors` or from
// the shards a `model.safetensors.index.json` lists.
//
// Ownership: the Checkpoint owns the memory-mapped files; TensorViews it hands out stay valid
// while it lives (ModelWeights holds it in a shared_ptr for that reason). Immutable after
// opening, so safe to share across threads.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/safetensors.h"
#include "engine/model/tensor_view.h"

namespace xlserve {

inline constexpr char kSingleCheckpointFile[] = "model.safetensors";
inline constexpr char kShardIndexFile[] = "model.safetensors.index.json";

class Checkpoint {
 public:
  // Opens `model_dir`/model.safetensors when it exists (transformers prefers it too), else
  // `model_dir`/model.safetensors.index.json. NotFound when neither exists.
  static absl::StatusOr<std::shared_ptr<const Checkpoint>> OpenDirectory(const std::string& model_dir);
  // One safetensors file holding every tensor.
  static absl::StatusOr<std::shared_ptr<const Checkpoint>> OpenFile(const std::string& path);
  // A shard index: {"weight_map": {tensor name: shard file name}}; shard names are relative to
  // the index's directory. Every shard is opened once; each listed tensor must be in its shard.
  // Tensors a shard holds but the weight_map does not list are not visible.
  static absl::StatusOr<std::shared_ptr<const Checkpoint>> OpenIndex(const std::string& index_path);

  // NotFound naming the tensor and where it was looked for when absent.
  absl::StatusOr<TensorView> Find(std::string_view name) const;
  bool Contains(std::string_view name) const { return locations_.find(name) != locations_.end(); }
  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  // The opened file paths, one per shard.
  std::vector<std::string> files() const;
  // What was opened (file or index path), for messages.
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*, std::less<>> locations_;
};

}  // namespace xlserve
