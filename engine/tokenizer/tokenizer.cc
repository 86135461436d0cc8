#include "engine/tokenizer/tokenizer.h"

#include <filesystem>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/internal/added_vocabulary.h"
#include "engine/tokenizer/internal/bpe_model.h"
#include "engine/tokenizer/internal/byte_level.h"
#include "engine/tokenizer/internal/nfc.h"
#include "engine/tokenizer/internal/pre_tokenizer.h"
#include "engine/tokenizer/internal/utf8.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace xlserve {
namespace {

// Ids above the defined tokens a tokenizer may leave unused (reserved ranges).
constexpr int64_t kMaxIdGap = int64_t{1} << 16;

using nlohmann::json;
using tokenizer_internal::AddedVocabulary;
using tokenizer_internal::BpeModel;

std::string TypeOf(const json& component) {
  if (component.is_object() && component.contains("type") && component["type"].is_string()) {
    return component["type"].get<std::string>();
  }
  return component.dump();
}

// Whether the normalizer is NFC (true) or nothing (false); anything else is unsupported.
absl::StatusOr<bool> ParseNormalizer(const json& normalizer) {
  if (normalizer.is_null()) return false;
  const std::string type = TypeOf(normalizer);
  if (type == "NFC") return true;
  if (type == "Sequence" && normalizer.contains("normalizers") &&
      normalizer["normalizers"].is_array()) {
    const json& list = normalizer["normalizers"];
    if (list.empty()) return false;
    if (list.size() == 1) return ParseNormalizer(list[0]);
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json normalizer \"", type, "\" is unsupported (only null or NFC)"));
}

absl::Status CheckDecoder(const json& decoder) {
  if (decoder.is_object() && TypeOf(decoder) == "ByteLevel") return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json decoder \"", decoder.is_null() ? "null" : TypeOf(decoder),
                   "\" is unsupported (byte-level BPE needs a ByteLevel decoder)"));
}

// The special tokens a TemplateProcessing places before and after the text in "single".
void TemplateSpecials(const json& processor, std::vector<std::string>* before,
                      std::vector<std::string>* after) {
  if (!processor.is_object()) return;
  const std::string type = TypeOf(processor);
  if (type == "Sequence" && processor.contains("processors") &&
      processor["processors"].is_array()) {
    for (const json& p : processor["processors"]) TemplateSpecials(p, before, after);
    return;
  }
  if (type != "TemplateProcessing" || !processor.contains("single") ||
      !processor["single"].is_array()) {
    return;
  }
  bool seen_text = false;
  for (const json& piece : processor["single"]) {
    if (piece.contains("Sequence")) {
      seen_text = true;
    } else if (piece.contains("SpecialToken") && piece["SpecialToken"].contains("id") &&
               piece["SpecialToken"]["id"].is_string()) {
      (seen_text ? after : before)->push_back(piece["SpecialToken"]["id"].get<std::string>());
    }
  }
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromModelDirectory(const std::string& model_dir) {
  const std::filesystem::path path = std::filesystem::path(model_dir) / "tokenizer.json";
  if (!std::filesystem::exists(path)) return std::unique_ptr<Tokenizer>();
  return FromFile(path.string());
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::ostringstream content;
  content << in.rdbuf();
  if (!in.good() && !in.eof()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  auto tokenizer = FromJson(content.str());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view text) {
  // nlohmann reports problems by exception; they stop here and become a Status.
  try {
    const json root = json::parse(text);
    if (!root.is_object()) return absl::InvalidArgumentError("tokenizer.json is not a JSON object");
    const json null_value;
    const auto get = [&](const char* key) -> const json& {
      const auto it = root.find(key);
      return it == root.end() ? null_value : *it;
    };

    const json& model = get("model");
    if (!model.is_object())
      return absl::InvalidArgumentError("tokenizer.json has no \"model\" object");
    const std::string model_type = model.value("type", std::string("BPE"));
    if (model_type != "BPE") {
      return absl::UnimplementedError(
          absl::StrCat("tokenizer.json model type \"", model_type, "\" is unsupported (only BPE)"));
    }
    ASSIGN_OR_RETURN(const bool nfc, ParseNormalizer(get("normalizer")));
    RETURN_IF_ERROR(CheckDecoder(get("decoder")));

    std::unique_ptr<Tokenizer> tok(new Tokenizer());
    tok->nfc_ = nfc;
    ASSIGN_OR_RETURN(tok->model_, BpeModel::FromJson(model));
    ASSIGN_OR_RETURN(tok->pre_tokenizer_,
                     tokenizer_internal::PreTokenizerFromJson(get("pre_tokenizer")));
    ASSIGN_OR_RETURN(
        AddedVocabulary added,
        AddedVocabulary::FromJson(get("added_tokens"), nfc ? &tokenizer_internal::ToNfc : nullptr));
    tok->added_ = std::make_unique<AddedVocabulary>(std::move(added));

    int size = 0;
    for (const auto& [token, id] : tok->model_->vocab()) size = std::max(size, id + 1);
    for (const auto& token : tok->added_->tokens()) size = std::max(size, token.id + 1);
    // Tables are indexed by id: a few large ids in a small file must not allocate gigabytes.
    // Real vocabularies are dense, with at most some reserved room above the model's ids.
    const int64_t entries = static_cast<int64_t>(tok->model_->vocab().size() + tok->added_->tokens().size());
    if (size > entries + kMaxIdGap) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json token ids reach ", size - 1, " but only ",
                                                     entries, " tokens are defined: ids this sparse are refused"));
    }
    tok->id_to_token_.resize(size);
    tok->has_token_.assign(size, false);
    tok->is_special_.assign(size, false);
    for (const auto& [token, id] : tok->model_->vocab()) {
      tok->id_to_token_[id] = token;
      tok->has_token_[id] = true;
    }
    // An added token's content wins over a model entry with the same id, as in HF.
    for (const auto& token : tok->added_->tokens()) {
      tok->id_to_token_[token.id] = token.content;
      tok->has_token_[token.id] = true;
      tok->is_special_[token.id] = token.special;
    }
    tok->id_to_bytes_.resize(size);
    for (int id = 0; id < size; ++id) {
      tok->id_to_bytes_[id] = tokenizer_internal::VocabStringToBytes(tok->id_to_token_[id]);
    }

    std::vector<std::string> before, after;
    TemplateSpecials(get("post_processor"), &before, &after);
    const auto first_known = [&](const std::vector<std::string>& names) -> std::optional<int> {
      for (const std::string& name : names) {
        if (auto id = tok->TokenToId(name)) return id;
      }
      return std::nullopt;
    };
    tok->bos_id_ = first_known(before);
    if (!tok->bos_id_) {
      tok->bos_id_ =
          first_known({"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>"});
    }
    tok->eos_id_ = first_known(after);
    if (!tok->eos_id_) {
      tok->eos_id_ = first_known({"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"});
    }
    return tok;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<std::vector<int>> Tokenizer::Encode(std::string_view text) const {
  std::vector<char32_t> unused;
  RETURN_IF_ERROR(tokenizer_internal::DecodeUtf8(text, &unused, nullptr));
  std::vector<AddedVocabulary::Segment> raw_segments;
  added_->Split(text, /*normalized_pass=*/false, &raw_segments);
  std::vector<int> ids;
  ids.reserve(text.size() / 3 + 1);
  std::vector<AddedVocabulary::Segment> segments;
  std::vector<std::string> pieces;
  for (const AddedVocabulary::Segment& raw : raw_segments) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    // HF normalizes each piece left between non-normalized added tokens on its own.
    std::string normalized(raw.text);
    if (nfc_) {
      ASSIGN_OR_RETURN(normalized, tokenizer_internal::ToNfc(raw.text));
    }
    segments.clear();
    added_->Split(normalized, /*normalized_pass=*/true, &segments);
    for (const AddedVocabulary::Segment& segment : segments) {
      if (segment.id >= 0) {
        ids.push_back(segment.id);
        continue;
      }
      pieces.assign(1, std::string(segment.text));
      RETURN_IF_ERROR(pre_tokenizer_->Apply(&pieces));
      for (const std::string& piece : pieces) model_->Encode(piece, &ids);
    }
  }
  return ids;
}

absl::Status Tokenizer::AppendTokenBytes(int id, bool skip_special, std::string* bytes) const {
  if (id < 0 || id >= vocab_size() || !has_token_[id]) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is not in the vocabulary (size ", vocab_size(), ")"));
  }
  if (skip_special && is_special_[id]) return absl::OkStatus();
  bytes->append(id_to_bytes_[id]);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int> ids, bool skip_special) const {
  std::string bytes;
  for (int id : ids) RETURN_IF_ERROR(AppendTokenBytes(id, skip_special, &bytes));
  std::string text;
  tokenizer_internal::AppendLossyUtf8(bytes, &text);
  return text;
}

std::optional<int> Tokenizer::TokenToId(std::string_view token) const {
  for (const auto& added : added_->tokens()) {
    if (added.content == token) return added.id;
  }
  const auto& vocab = model_->vocab();
  const auto it = vocab.find(std::string(token));
  if (it == vocab.end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::IdToToken(int id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_token_[id];
}

bool Tokenizer::IsSpecial(int id) const { return id >= 0 && id < vocab_size() && is_special_[id]; }

}  // namespace xlserve
