// ModelConfig: the typed, validated form of a Hugging Face xLSTM `config.json`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace xlserve {

enum class WeightMode { kSingle, kFused };
enum class MtpHeadType { kMlstmBlock, kLinear };

// Multi-token-prediction heads (xlserve's extension of the format, DESIGN §2).
struct MtpConfig {
  int num_heads = 1;  // head 0 is the ordinary next-token path
  MtpHeadType head_type = MtpHeadType::kMlstmBlock;
  int trunk_layers = 0;  // depth of the residual stream the extra heads read
};

struct ModelConfig {
  int vocab_size = 0;
  int hidden_size = 0;  // d; `embedding_dim` in some files
  int num_blocks = 0;   // `num_hidden_layers` in some files
  int num_heads = 0;
  double qk_dim_factor = 0.5;
  double v_dim_factor = 1.0;
  double ffn_proj_factor = 2.667;
  int ffn_round_up_to_multiple_of = 64;
  std::optional<double> gate_soft_cap = 15.0;          // null in the file: no cap
  std::optional<double> output_logit_soft_cap = 30.0;  // null in the file: no cap
  double norm_eps = 1e-6;  // RMSNorm / per-head LayerNorm epsilon
  double eps = 1e-6;       // mLSTM denominator epsilon
  bool use_bias = false;
  WeightMode weight_mode = WeightMode::kSingle;
  bool tie_word_embeddings = false;
  int chunk_size = 64;  // transformers' prefill chunk; the CPU backend may use any
  std::optional<int> bos_token_id;
  std::optional<int> pad_token_id;
  std::vector<int> eos_token_ids;
  std::optional<MtpConfig> mtp;

  // Derived sizes, exactly as transformers' xLSTMLayer / xLSTMFeedForward compute them.
  int qk_dim() const;       // int(hidden_size * qk_dim_factor)
  int v_dim() const;        // int(hidden_size * v_dim_factor)
  int qk_head_dim() const;  // qk_dim / num_heads
  int v_head_dim() const;   // v_dim / num_heads
  int ffn_dim() const;      // round_up(hidden_size * ffn_proj_factor, ffn_round_up_to_multiple_of)

  // Floats of recurrent state per sequence for `layers` mLSTM layers: C, n and m per head.
  int64_t StateFloatsPerLayer() const;
};

// Checks a config built in code the way ParseModelConfig checks a file: positive sizes,
// derived dims divisible by num_heads, token ids inside the vocabulary, MTP depth in range.
absl::Status ValidateModelConfig(const ModelConfig& config);

// Parses and validates a config.json object. Errors name the offending key.
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j);

// Reads `path` (a config.json file) and parses it. Errors name the file and the key.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// The config.json object transformers would write for `config` (both spellings of the aliased
// keys, plus our "mtp" when set). ParseModelConfig(ModelConfigToJson(c)) gives back `c`; tests
// use it to write checkpoint directories.
nlohmann::json ModelConfigToJson(const ModelConfig& config);

}  // namespace xlserve
