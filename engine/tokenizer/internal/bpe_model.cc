#include "engine/tokenizer/internal/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/internal/byte_level.h"

namespace xlserve::tokenizer_internal {
namespace {

using nlohmann::json;

// Fetches an optional key that must be null or absent for exact reproduction.
absl::Status RequireUnset(const json& model, const std::string& key, const std::string& why) {
  const auto it = model.find(key);
  if (it == model.end() || it->is_null()) return absl::OkStatus();
  if (it->is_string() && it->get<std::string>().empty()) return absl::OkStatus();
  if (it->is_number() && it->get<double>() == 0.0) return absl::OkStatus();
  if (it->is_boolean() && !it->get<bool>()) return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json model.", key, " = ", it->dump(), " is unsupported (", why, ")"));
}

absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const json& entry,
                                                               std::size_t index) {
  if (entry.is_string()) {
    const std::string& line = entry.get_ref<const std::string&>();
    const std::size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json model.merges[", index,
                                                     "] = \"", line, "\" is not two tokens"));
    }
    return std::make_pair(line.substr(0, space), line.substr(space + 1));
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    return std::make_pair(entry[0].get<std::string>(), entry[1].get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json model.merges[", index,
                                                 "] is neither \"a b\" nor [\"a\", \"b\"]"));
}

struct Symbol {
  int id;
  int prev;
  int next;
  bool alive;
};

struct QueuedMerge {
  int rank;
  int pos;
  int new_id;
  // std::priority_queue is a max-heap; invert so the lowest rank, then leftmost, comes first.
  bool operator<(const QueuedMerge& o) const {
    if (rank != o.rank) return rank > o.rank;
    return pos > o.pos;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& model) {
  std::unique_ptr<BpeModel> bpe(new BpeModel());
  if (auto st = RequireUnset(model, "dropout", "sampling makes encoding nondeterministic");
      !st.ok())
    return st;
  if (auto st = RequireUnset(model, "byte_fallback", "only byte-level BPE is supported"); !st.ok())
    return st;
  if (auto st = RequireUnset(model, "continuing_subword_prefix", "not used by byte-level BPE");
      !st.ok())
    return st;
  if (auto st = RequireUnset(model, "end_of_word_suffix", "not used by byte-level BPE"); !st.ok())
    return st;

  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError("tokenizer.json model.vocab is missing or not an object");
  }
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json model.vocab[\"", token, "\"] is not a valid id"));
    }
    bpe->vocab_.emplace(token, id.get<int>());
  }

  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return absl::InvalidArgumentError("tokenizer.json model.merges is missing or not an array");
  }
  for (std::size_t i = 0; i < merges->size(); ++i) {
    auto pair = ParseMerge((*merges)[i], i);
    if (!pair.ok()) return pair.status();
    const auto left = bpe->vocab_.find(pair->first);
    const auto right = bpe->vocab_.find(pair->second);
    const auto merged = bpe->vocab_.find(pair->first + pair->second);
    if (left == bpe->vocab_.end() || right == bpe->vocab_.end() || merged == bpe->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json model.merges[", i, "] (\"",
                                                     pair->first, "\", \"", pair->second,
                                                     "\") uses a token missing from the vocab"));
    }
    // A repeated pair keeps its first (lowest) rank, as HF's map insertion order gives.
    bpe->merges_.emplace(PairKey(left->second, right->second),
                         Merge{static_cast<int>(i), merged->second});
  }

  for (int b = 0; b < 256; ++b) {
    const auto it = bpe->vocab_.find(BytesToVocabString(std::string(1, static_cast<char>(b))));
    bpe->byte_ids_[b] = it == bpe->vocab_.end() ? -1 : it->second;
  }
  if (const auto unk = model.find("unk_token"); unk != model.end() && unk->is_string()) {
    const auto it = bpe->vocab_.find(unk->get<std::string>());
    if (it == bpe->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer.json model.unk_token \"", unk->get<std::string>(), "\" is not in the vocab"));
    }
    bpe->unk_id_ = it->second;
  }
  bpe->fuse_unk_ = model.value("fuse_unk", false);
  bpe->ignore_merges_ = model.value("ignore_merges", false);
  return bpe;
}

void BpeModel::Encode(std::string_view bytes, std::vector<int>* ids) const {
  if (bytes.size() > kMaxCachedBytes) {
    EncodeUncached(bytes, ids);
    return;
  }
  std::string key(bytes);
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int> word_ids;
  EncodeUncached(bytes, &word_ids);
  ids->insert(ids->end(), word_ids.begin(), word_ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheCapacity) cache_.clear();
  cache_.emplace(std::move(key), std::move(word_ids));
}

void BpeModel::EncodeUncached(std::string_view bytes, std::vector<int>* ids) const {
  if (ignore_merges_) {
    const auto it = vocab_.find(BytesToVocabString(bytes));
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  // Bytes whose token is missing become the unknown token (fused if asked) or vanish, as in HF.
  std::vector<Symbol> symbols;
  symbols.reserve(bytes.size());
  bool previous_unknown = false;
  for (unsigned char b : bytes) {
    int id = byte_ids_[b];
    const bool unknown = id < 0;
    if (unknown) {
      if (!unk_id_) continue;
      if (fuse_unk_ && previous_unknown) continue;
      id = *unk_id_;
    }
    previous_unknown = unknown;
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<QueuedMerge> queue;
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) {
    const auto it = merges_.find(PairKey(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) queue.push({it->second.rank, i, it->second.new_id});
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Entries go stale when a neighbour merged first; the pair must still produce new_id.
    const auto current = merges_.find(PairKey(left.id, right.id));
    if (current == merges_.end() || current->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      const auto it = merges_.find(PairKey(symbols[left.prev].id, left.id));
      if (it != merges_.end()) queue.push({it->second.rank, left.prev, it->second.new_id});
    }
    if (left.next >= 0) {
      const auto it = merges_.find(PairKey(left.id, symbols[left.next].id));
      if (it != merges_.end()) queue.push({it->second.rank, top.pos, it->second.new_id});
    }
  }
  for (int i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace xlserve::tokenizer_internal
