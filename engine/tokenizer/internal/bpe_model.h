// Byte-level BPE model: a vocab of byte-level strings and ranked merges. Encodes one pre-token
// (raw bytes) into ids the way HF's BPE model does (lowest-rank pair first, leftmost on ties).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace xlserve::tokenizer_internal {

class BpeModel {
 public:
  // Builds the model from tokenizer.json's "model" object. Fails, naming the key or entry, on
  // anything this implementation does not reproduce exactly (dropout, byte_fallback, prefixes).
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model);

  // Appends the ids of the pre-token `bytes` to `ids`. Thread-safe.
  void Encode(std::string_view bytes, std::vector<int>* ids) const;

  const std::unordered_map<std::string, int>& vocab() const { return vocab_; }

 private:
  BpeModel() = default;

  struct Merge {
    int rank;
    int new_id;
  };
  static std::uint64_t PairKey(int left, int right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
  }
  void EncodeUncached(std::string_view bytes, std::vector<int>* ids) const;

  std::unordered_map<std::string, int> vocab_;  // byte-level string -> id
  std::unordered_map<std::uint64_t, Merge> merges_;
  int byte_ids_[256];  // id of each single byte's token, -1 when the vocab lacks it
  std::optional<int> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  // Memo of pre-token bytes -> ids. Bounded: cleared when it grows past kCacheCapacity.
  static constexpr std::size_t kCacheCapacity = 65536;
  static constexpr std::size_t kMaxCachedBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>> cache_;
};

}  // namespace xlserve::tokenizer_internal
