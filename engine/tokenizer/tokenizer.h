// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-2, GPT-NeoX / xLSTM-7b,
// Llama-3 style files), reproducing HF `tokenizers`' ids.
//
// Supported components (anything else fails at load with an error naming the component):
//   model       BPE with vocab + merges ("a b" strings or ["a", "b"] pairs), ignore_merges,
//               unk_token/fuse_unk; no dropout, byte_fallback, subword prefix/suffix.
//   normalizer  null or NFC (alone or as a one-element Sequence). NFD/NFKC/... are rejected.
//   pre_tokenizer  ByteLevel(add_prefix_space, use_regex), Split(Regex|String pattern, any
//               behavior, invert), Digits, and Sequence of these; must include a ByteLevel step.
//   decoder     ByteLevel.
//   added_tokens  special and non-special, honouring single_word/lstrip/rstrip/normalized.
//   post_processor  ignored: Encode never adds BOS/EOS or other template tokens; callers that want
//               a BOS prepend bos_id() themselves.
//
// Encode parses special tokens that appear in the text (like HF with encode_special_tokens off).
// A Tokenizer is immutable after loading except for an internal, mutex-guarded BPE cache, so one
// instance may be shared by all threads.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace xlserve {

namespace tokenizer_internal {
class AddedVocabulary;
class BpeModel;
class PreTokenizer;
}  // namespace tokenizer_internal

class Tokenizer {
 public:
  // Loads `path` (a tokenizer.json). Errors name the file and the offending key.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  // Parses tokenizer.json content held in `json` (not retained).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json);
  // `model_dir`/tokenizer.json, or null when the model directory has none (token ids only).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromModelDirectory(const std::string& model_dir);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text` (UTF-8; invalid UTF-8 is an InvalidArgument error).
  absl::StatusOr<std::vector<int>> Encode(std::string_view text) const;

  // Text of `ids`; invalid UTF-8 produced by partial byte tokens becomes U+FFFD, as in HF. Ids
  // outside [0, vocab_size()) or without a token are an InvalidArgument error. `skip_special`
  // drops special added tokens.
  absl::StatusOr<std::string> Decode(std::span<const int> ids, bool skip_special = false) const;

  // Appends the raw bytes that token `id` decodes to (possibly part of a UTF-8 character) to
  // `bytes`; nothing for a special token when `skip_special`. Used by StreamingDecoder.
  absl::Status AppendTokenBytes(int id, bool skip_special, std::string* bytes) const;

  // One more than the largest id of the vocab and the added tokens.
  int vocab_size() const { return static_cast<int>(id_to_token_.size()); }
  std::optional<int> TokenToId(std::string_view token) const;
  // The token's vocab spelling (byte-level characters); empty for ids without a token.
  std::string_view IdToToken(int id) const;
  bool IsSpecial(int id) const;

  // Best effort: taken from a TemplateProcessing post-processor if present, else from
  // conventional special-token names (<|begin_of_text|>, <s>, <|endoftext|>, ...). A model's
  // config.json ids should take precedence.
  std::optional<int> bos_id() const { return bos_id_; }
  std::optional<int> eos_id() const { return eos_id_; }

 private:
  Tokenizer();

  std::unique_ptr<tokenizer_internal::BpeModel> model_;
  std::unique_ptr<tokenizer_internal::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<tokenizer_internal::AddedVocabulary> added_;
  std::vector<std::string> id_to_token_;
  std::vector<std::string> id_to_bytes_;  // what each id decodes to
  std::vector<bool> has_token_;
  std::vector<bool> is_special_;
  std::optional<int> bos_id_;
  std::optional<int> eos_id_;
  bool nfc_ = false;  // normalizer NFC
};

}  // namespace xlserve
