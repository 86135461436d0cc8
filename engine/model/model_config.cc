#include "engine/model/model_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace xlserve {
namespace {

using json = nlohmann::json;

// A JSON value as it appears in the file, cut short so one bad value cannot flood a log.
std::string Show(const json& value) {
  std::string text = value.dump();
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

absl::Status KeyError(const std::string& key, const json& value, const std::string& requirement) {
  return absl::InvalidArgumentError(
      absl::StrCat("config key \"", key, "\" ", requirement, ", got ", Show(value)));
}

// The readers below leave `out` untouched when `key` is absent, so callers preset defaults.

// True when `value` is a JSON integer that fits in an int.
bool IsInt(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>() <= uint64_t{std::numeric_limits<int>::max()};
  if (!value.is_number_integer()) return false;
  const int64_t v = value.get<int64_t>();
  return v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max();
}

absl::Status ReadInt(const json& obj, const std::string& key, int& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (!it->is_number_integer()) return KeyError(key, *it, "must be an integer");
  if (!IsInt(*it)) return KeyError(key, *it, "is out of range");
  out = it->get<int>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const json& obj, const std::string& key, double& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (!it->is_number()) return KeyError(key, *it, "must be a number");
  out = it->get<double>();
  return absl::OkStatus();
}

// A number, or null meaning "not set".
absl::Status ReadOptionalDouble(const json& obj, const std::string& key, std::optional<double>& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (it->is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  if (!it->is_number()) return KeyError(key, *it, "must be a number or null");
  out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const json& obj, const std::string& key, bool& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (!it->is_boolean()) return KeyError(key, *it, "must be true or false");
  out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadString(const json& obj, const std::string& key, std::string& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (!it->is_string()) return KeyError(key, *it, "must be a string");
  out = it->get<std::string>();
  return absl::OkStatus();
}

// A size given under either of two names; null counts as absent (transformers writes null
// for a spelling it derives). With `must_agree`, both present must hold the same value;
// otherwise `key` wins, as in transformers, whose xLSTMModel builds `num_blocks` blocks even
// when the file also carries the default num_hidden_layers = 32.
absl::Status ReadAliasedSize(const json& obj, const std::string& key, const std::string& alias, bool must_agree,
                             int& out) {
  const bool has_key = obj.contains(key);
  const bool has_alias = obj.contains(alias);
  if (!has_key && !has_alias) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"", key, "\" (or \"", alias, "\") is missing"));
  }
  int from_key = 0, from_alias = 0;
  const bool key_set = has_key && !obj.at(key).is_null();
  const bool alias_set = has_alias && !obj.at(alias).is_null();
  if (key_set) RETURN_IF_ERROR(ReadInt(obj, key, from_key));
  if (alias_set) RETURN_IF_ERROR(ReadInt(obj, alias, from_alias));
  if (!key_set && !alias_set) {
    return absl::InvalidArgumentError(
        absl::StrCat("config keys \"", key, "\" and \"", alias, "\" are both null"));
  }
  if (must_agree && key_set && alias_set && from_key != from_alias) {
    return absl::InvalidArgumentError(absl::StrCat("config keys \"", key, "\" (", from_key, ") and \"",
                                                   alias, "\" (", from_alias, ") disagree"));
  }
  out = key_set ? from_key : from_alias;
  return absl::OkStatus();
}

absl::Status ReadRequiredInt(const json& obj, const std::string& key, int& out) {
  if (!obj.contains(key)) {
    return absl::InvalidArgumentError(absl::StrCat("config key \"", key, "\" is missing"));
  }
  return ReadInt(obj, key, out);
}

absl::Status CheckPositive(const std::string& key, double value) {
  if (!(value > 0) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"", key, "\" must be a positive number, got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckNonNegative(const std::string& key, double value) {
  if (!(value >= 0) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"", key, "\" must be a non-negative number, got ", value));
  }
  return absl::OkStatus();
}

// Absent keys take transformers' xLSTMConfig defaults; null means "no such token".
absl::Status ReadTokenId(const json& obj, const std::string& key, std::optional<int>& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (it->is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  int id = 0;
  RETURN_IF_ERROR(ReadInt(obj, key, id));
  out = id;
  return absl::OkStatus();
}

absl::Status ReadEosIds(const json& obj, std::vector<int>& out) {
  auto it = obj.find("eos_token_id");
  if (it == obj.end()) return absl::OkStatus();
  out.clear();
  if (it->is_null()) return absl::OkStatus();
  if (it->is_number_integer()) {
    int id = 0;
    RETURN_IF_ERROR(ReadInt(obj, "eos_token_id", id));
    out.push_back(id);
    return absl::OkStatus();
  }
  if (!it->is_array()) return KeyError("eos_token_id", *it, "must be an integer, a list of integers or null");
  for (const json& element : *it) {
    if (!IsInt(element)) {
      return KeyError("eos_token_id", *it, "must be an integer, a list of integers or null");
    }
    out.push_back(element.get<int>());
  }
  return absl::OkStatus();
}

absl::Status CheckTokenId(const std::string& key, int id, int vocab_size) {
  if (id < 0 || id >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("config key \"", key, "\" is ", id,
                                                   ", outside the vocabulary [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

absl::Status ParseMtp(const json& obj, int num_blocks, MtpConfig& mtp) {
  if (!obj.is_object()) return KeyError("mtp", obj, "must be an object");
  for (const auto& [key, value] : obj.items()) {
    if (key != "num_heads" && key != "head_type" && key != "trunk_layers") {
      return absl::InvalidArgumentError(absl::StrCat(
          "config key \"mtp\" has unknown key \"", key, "\" (expected num_heads, head_type, trunk_layers)"));
    }
  }
  if (!obj.contains("num_heads")) {
    return absl::InvalidArgumentError("config key \"mtp.num_heads\" is missing");
  }
  RETURN_IF_ERROR(ReadInt(obj, "num_heads", mtp.num_heads));
  std::string head_type = "mlstm_block";
  RETURN_IF_ERROR(ReadString(obj, "head_type", head_type));
  if (head_type == "mlstm_block") {
    mtp.head_type = MtpHeadType::kMlstmBlock;
  } else if (head_type == "linear") {
    mtp.head_type = MtpHeadType::kLinear;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key \"mtp.head_type\" is \"", head_type, "\", expected \"mlstm_block\" or \"linear\""));
  }
  // Block heads are siblings of the last trunk block; linear heads read the final hidden state.
  mtp.trunk_layers = mtp.head_type == MtpHeadType::kMlstmBlock ? num_blocks - 1 : num_blocks;
  return ReadInt(obj, "trunk_layers", mtp.trunk_layers);
}

// Python's float floor division `a // b`, which rounds the exact quotient of the fmod
// decomposition rather than floor(a / b); it differs for quotients that round up in fp.
double PythonFloorDiv(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.0;
  if (div == 0) return std::copysign(0.0, a / b);
  double floored = std::floor(div);
  if (div - floored > 0.5) floored += 1.0;
  return floored;
}

// int(x) for a double known to be finite; sizes beyond int are rejected by the caller.
int64_t TruncateToInt64(double x) {
  if (!(std::fabs(x) < 9.0e18)) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(x);
}

int64_t QkDim(const ModelConfig& c) { return TruncateToInt64(double(c.hidden_size) * c.qk_dim_factor); }
int64_t VDim(const ModelConfig& c) { return TruncateToInt64(double(c.hidden_size) * c.v_dim_factor); }
int64_t FfnDim(const ModelConfig& c) {
  const double x = double(c.hidden_size) * c.ffn_proj_factor;
  const double m = c.ffn_round_up_to_multiple_of;
  return TruncateToInt64(PythonFloorDiv(x + m - 1, m) * m);
}

absl::Status CheckDerivedSize(const std::string& name, int64_t value, const std::string& formula) {
  if (value < 1 || value > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("derived ", name, " = ", formula, " is ", value, "; it must be in 1..2^31-1"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelConfig(const ModelConfig& c) {
  for (auto [key, value] : {std::pair<const char*, int>{"vocab_size", c.vocab_size},
                            {"hidden_size", c.hidden_size},
                            {"num_blocks", c.num_blocks},
                            {"num_heads", c.num_heads},
                            {"ffn_round_up_to_multiple_of", c.ffn_round_up_to_multiple_of},
                            {"chunk_size", c.chunk_size}}) {
    if (value < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("config key \"", key, "\" must be a positive integer, got ", value));
    }
  }
  RETURN_IF_ERROR(CheckPositive("qk_dim_factor", c.qk_dim_factor));
  RETURN_IF_ERROR(CheckPositive("v_dim_factor", c.v_dim_factor));
  RETURN_IF_ERROR(CheckPositive("ffn_proj_factor", c.ffn_proj_factor));
  RETURN_IF_ERROR(CheckNonNegative("norm_eps", c.norm_eps));
  RETURN_IF_ERROR(CheckNonNegative("eps", c.eps));
  if (c.gate_soft_cap) RETURN_IF_ERROR(CheckPositive("gate_soft_cap", *c.gate_soft_cap));
  if (c.output_logit_soft_cap) {
    RETURN_IF_ERROR(CheckPositive("output_logit_soft_cap", *c.output_logit_soft_cap));
  }

  const int64_t qk = QkDim(c), v = VDim(c);
  RETURN_IF_ERROR(CheckDerivedSize("qk_dim", qk, "int(hidden_size * qk_dim_factor)"));
  RETURN_IF_ERROR(CheckDerivedSize("v_dim", v, "int(hidden_size * v_dim_factor)"));
  RETURN_IF_ERROR(CheckDerivedSize("ffn_dim", FfnDim(c), "round_up(hidden_size * ffn_proj_factor)"));
  if (qk % c.num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("qk_dim = int(hidden_size * qk_dim_factor) = int(", c.hidden_size, " * ", c.qk_dim_factor,
                     ") = ", qk, " is not divisible by num_heads (", c.num_heads, ")"));
  }
  if (v % c.num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("v_dim = int(hidden_size * v_dim_factor) = int(", c.hidden_size, " * ", c.v_dim_factor,
                     ") = ", v, " is not divisible by num_heads (", c.num_heads, ")"));
  }

  if (c.bos_token_id) RETURN_IF_ERROR(CheckTokenId("bos_token_id", *c.bos_token_id, c.vocab_size));
  if (c.pad_token_id) RETURN_IF_ERROR(CheckTokenId("pad_token_id", *c.pad_token_id, c.vocab_size));
  for (int id : c.eos_token_ids) RETURN_IF_ERROR(CheckTokenId("eos_token_id", id, c.vocab_size));

  if (c.mtp) {
    if (c.mtp->num_heads < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("config key \"mtp.num_heads\" must be >= 1, got ", c.mtp->num_heads));
    }
    if (c.mtp->trunk_layers < 0 || c.mtp->trunk_layers > c.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("config key \"mtp.trunk_layers\" is ", c.mtp->trunk_layers,
                                                     ", expected 0..num_blocks (", c.num_blocks, ")"));
    }
  }
  return absl::OkStatus();
}

int ModelConfig::qk_dim() const { return static_cast<int>(QkDim(*this)); }
int ModelConfig::v_dim() const { return static_cast<int>(VDim(*this)); }
int ModelConfig::qk_head_dim() const { return qk_dim() / num_heads; }
int ModelConfig::v_head_dim() const { return v_dim() / num_heads; }
int ModelConfig::ffn_dim() const { return static_cast<int>(FfnDim(*this)); }

int64_t ModelConfig::StateFloatsPerLayer() const {
  const int64_t qkh = qk_head_dim(), vh = v_head_dim();
  return int64_t{num_heads} * (qkh * vh + qkh + 1);
}

absl::StatusOr<ModelConfig> ParseModelConfig(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("config must be a JSON object, got " + Show(j));

  std::string model_type = "xlstm";
  RETURN_IF_ERROR(ReadString(j, "model_type", model_type));
  if (model_type != "xlstm") {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"model_type\" is \"", model_type, "\", expected \"xlstm\""));
  }

  ModelConfig c;
  // transformers' defaults for the token ids; the file usually states them.
  c.bos_token_id = 0;
  c.pad_token_id = 1;
  c.eos_token_ids = {2};

  RETURN_IF_ERROR(ReadRequiredInt(j, "vocab_size", c.vocab_size));
  // transformers sizes the embedding by embedding_dim and everything else by hidden_size, so
  // a file where they differ describes no working model.
  RETURN_IF_ERROR(ReadAliasedSize(j, "hidden_size", "embedding_dim", /*must_agree=*/true, c.hidden_size));
  RETURN_IF_ERROR(ReadAliasedSize(j, "num_blocks", "num_hidden_layers", /*must_agree=*/false, c.num_blocks));
  RETURN_IF_ERROR(ReadRequiredInt(j, "num_heads", c.num_heads));
  RETURN_IF_ERROR(ReadDouble(j, "qk_dim_factor", c.qk_dim_factor));
  RETURN_IF_ERROR(ReadDouble(j, "v_dim_factor", c.v_dim_factor));
  RETURN_IF_ERROR(ReadDouble(j, "ffn_proj_factor", c.ffn_proj_factor));
  RETURN_IF_ERROR(ReadInt(j, "ffn_round_up_to_multiple_of", c.ffn_round_up_to_multiple_of));
  RETURN_IF_ERROR(ReadOptionalDouble(j, "gate_soft_cap", c.gate_soft_cap));
  RETURN_IF_ERROR(ReadOptionalDouble(j, "output_logit_soft_cap", c.output_logit_soft_cap));
  RETURN_IF_ERROR(ReadDouble(j, "norm_eps", c.norm_eps));
  RETURN_IF_ERROR(ReadDouble(j, "eps", c.eps));
  RETURN_IF_ERROR(ReadBool(j, "use_bias", c.use_bias));
  RETURN_IF_ERROR(ReadBool(j, "tie_word_embeddings", c.tie_word_embeddings));
  RETURN_IF_ERROR(ReadInt(j, "chunk_size", c.chunk_size));

  std::string weight_mode = "single";
  RETURN_IF_ERROR(ReadString(j, "weight_mode", weight_mode));
  if (weight_mode == "single") {
    c.weight_mode = WeightMode::kSingle;
  } else if (weight_mode == "fused") {
    c.weight_mode = WeightMode::kFused;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("config key \"weight_mode\" is \"", weight_mode, "\", expected \"single\" or \"fused\""));
  }

  RETURN_IF_ERROR(ReadTokenId(j, "bos_token_id", c.bos_token_id));
  RETURN_IF_ERROR(ReadTokenId(j, "pad_token_id", c.pad_token_id));
  RETURN_IF_ERROR(ReadEosIds(j, c.eos_token_ids));

  if (auto it = j.find("mtp"); it != j.end() && !it->is_null()) {
    MtpConfig mtp;
    RETURN_IF_ERROR(ParseMtp(*it, c.num_blocks, mtp));
    c.mtp = mtp;
  }
  RETURN_IF_ERROR(ValidateModelConfig(c));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open model config ", path));
  std::stringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model config ", path, " is not valid JSON: ", e.what()));
  }
  absl::StatusOr<ModelConfig> config = ParseModelConfig(j);
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

json ModelConfigToJson(const ModelConfig& c) {
  json j;
  j["model_type"] = "xlstm";
  j["architectures"] = json::array({"xLSTMForCausalLM"});
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["embedding_dim"] = c.hidden_size;
  j["num_blocks"] = c.num_blocks;
  j["num_hidden_layers"] = c.num_blocks;
  j["num_heads"] = c.num_heads;
  j["qk_dim_factor"] = c.qk_dim_factor;
  j["v_dim_factor"] = c.v_dim_factor;
  j["ffn_proj_factor"] = c.ffn_proj_factor;
  j["ffn_round_up_to_multiple_of"] = c.ffn_round_up_to_multiple_of;
  j["gate_soft_cap"] = c.gate_soft_cap ? json(*c.gate_soft_cap) : json(nullptr);
  j["output_logit_soft_cap"] = c.output_logit_soft_cap ? json(*c.output_logit_soft_cap) : json(nullptr);
  j["norm_eps"] = c.norm_eps;
  j["eps"] = c.eps;
  j["use_bias"] = c.use_bias;
  j["weight_mode"] = c.weight_mode == WeightMode::kSingle ? "single" : "fused";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["chunk_size"] = c.chunk_size;
  j["bos_token_id"] = c.bos_token_id ? json(*c.bos_token_id) : json(nullptr);
  j["pad_token_id"] = c.pad_token_id ? json(*c.pad_token_id) : json(nullptr);
  if (c.eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  if (c.mtp) {
    j["mtp"] = {{"num_heads", c.mtp->num_heads},
                {"head_type", c.mtp->head_type == MtpHeadType::kMlstmBlock ? "mlstm_block" : "linear"},
                {"trunk_layers", c.mtp->trunk_layers}};
  }
  return j;
}

}  // namespace xlserve
