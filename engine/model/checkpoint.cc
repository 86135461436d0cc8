#include "engine/model/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace xlserve {

absl::StatusOr<std::shared_ptr<const Checkpoint>> Checkpoint::OpenDirectory(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  std::error_code ec;
  if (fs::exists(dir / kSingleCheckpointFile, ec)) return OpenFile((dir / kSingleCheckpointFile).string());
  if (fs::exists(dir / kShardIndexFile, ec)) return OpenIndex((dir / kShardIndexFile).string());
  return absl::NotFoundError(absl::StrCat("no ", kSingleCheckpointFile, " or ", kShardIndexFile, " in ", model_dir));
}

absl::StatusOr<std::shared_ptr<const Checkpoint>> Checkpoint::OpenFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  auto checkpoint = std::make_shared<Checkpoint>();
  checkpoint->source_ = path;
  for (const std::string& name : file->names()) checkpoint->locations_.emplace(name, file.get());
  checkpoint->files_.push_back(std::move(file));
  return checkpoint;
}

absl::StatusOr<std::shared_ptr<const Checkpoint>> Checkpoint::OpenIndex(const std::string& index_path) {
  using json = nlohmann::json;
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open shard index ", index_path));
  std::stringstream text;
  text << in.rdbuf();
  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("shard index ", index_path, " is not valid JSON: ", e.what()));
  }
  const auto map_it = index.is_object() ? index.find("weight_map") : index.end();
  if (map_it == index.end() || !map_it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("shard index ", index_path, " has no \"weight_map\" object"));
  }

  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  auto checkpoint = std::make_shared<Checkpoint>();
  checkpoint->source_ = index_path;
  std::unordered_map<std::string, const SafetensorsFile*> shards;
  for (const auto& [tensor, shard_value] : map_it->items()) {
    if (!shard_value.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard index ", index_path, ": weight_map entry of ", tensor, " is not a string"));
    }
    const std::string shard_name = shard_value.get<std::string>();
    // Shards are plain file names beside the index; anything else could read outside the model.
    if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "." || shard_name == "..") {
      return absl::InvalidArgumentError(absl::StrCat("shard index ", index_path, ": tensor ", tensor,
                                                     " names shard \"", shard_name, "\", not a plain file name"));
    }
    auto shard_it = shards.find(shard_name);
    if (shard_it == shards.end()) {
      absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open((dir / shard_name).string());
      if (!file.ok()) {
        return absl::Status(file.status().code(), absl::StrCat("shard ", shard_name, " of ", index_path,
                                                               " (first listed for tensor ", tensor,
                                                               "): ", file.status().message()));
      }
      shard_it = shards.emplace(shard_name, file->get()).first;
      checkpoint->files_.push_back(*std::move(file));
    }
    if (!shard_it->second->Contains(tensor)) {
      return absl::InvalidArgumentError(absl::StrCat("shard index ", index_path, " puts tensor ", tensor,
                                                     " in ", shard_name, ", which does not hold it"));
    }
    checkpoint->locations_.emplace(tensor, shard_it->second);
  }
  return checkpoint;
}

absl::StatusOr<TensorView> Checkpoint::Find(std::string_view name) const {
  auto it = locations_.find(name);
  if (it == locations_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor ", std::string(name), " not found in checkpoint ", source_));
  }
  return it->second->Find(name);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(locations_.size());
  for (const auto& [name, file] : locations_) out.push_back(name);
  return out;
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  for (const auto& file : files_) out.push_back(file->path());
  return out;
}

}  // namespace xlserve
