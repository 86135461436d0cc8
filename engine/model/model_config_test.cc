#include "engine/model/model_config.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "engine/model/checkpoint_layout.h"
#include "engine/model/testing/safetensors_writer.h"

namespace xlserve {
namespace {

using json = nlohmann::json;

// The keys of NX-AI/xLSTM-7b's config.json: sizes under `embedding_dim` / `num_blocks`, plus
// the kernel and dtype keys transformers accepts and we ignore.
constexpr char kXlstm7bConfig[] = R"({
  "architectures": ["xLSTMForCausalLM"],
  "add_out_norm": true,
  "autocast_kernel_dtype": "bfloat16",
  "bos_token_id": 0,
  "chunk_size": 64,
  "chunkwise_kernel": "chunkwise--triton_xl_chunk",
  "embedding_dim": 4096,
  "eos_token_id": 2,
  "eps": 1e-06,
  "ffn_proj_factor": 2.667,
  "ffn_round_up_to_multiple_of": 64,
  "force_bos_token_insert": true,
  "gate_soft_cap": 15.0,
  "inference_state_dtype": "float32",
  "max_inference_chunksize": 16384,
  "mode": "inference",
  "model_type": "xlstm",
  "norm_eps": 1e-06,
  "norm_reduction_force_float32": true,
  "num_blocks": 32,
  "num_heads": 8,
  "output_logit_soft_cap": 30.0,
  "pad_token_id": 1,
  "qk_dim_factor": 0.5,
  "return_last_states": true,
  "sequence_kernel": "native_sequence__triton",
  "step_kernel": "triton",
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.48.0.dev0",
  "use_bias": false,
  "use_cache": true,
  "v_dim_factor": 1.0,
  "vocab_size": 50304,
  "weight_mode": "single"
})";

// Verbatim what transformers 5.17 writes for xLSTMConfig(vocab_size=64, hidden_size=32,
// num_blocks=2, num_heads=2, weight_mode="fused", use_bias=True, eos_token_id=[2, 3])
// .save_pretrained(): both spellings of the aliased sizes, and num_hidden_layers left at its
// default 32 although the model has 2 blocks.
constexpr char kTransformersSmallConfig[] = R"({
  "add_out_norm": true,
  "autocast_kernel_dtype": "bfloat16",
  "bos_token_id": 0,
  "chunk_size": 64,
  "chunkwise_kernel": "chunkwise--native_autograd",
  "embedding_dim": 32,
  "eos_token_id": [
    2,
    3
  ],
  "eps": 1e-06,
  "ffn_proj_factor": 2.667,
  "ffn_round_up_to_multiple_of": 64,
  "gate_soft_cap": 15.0,
  "hidden_size": 32,
  "inference_state_dtype": "float32",
  "max_inference_chunksize": 16384,
  "mode": "inference",
  "model_type": "xlstm",
  "norm_eps": 1e-06,
  "norm_reduction_force_float32": true,
  "num_blocks": 2,
  "num_heads": 2,
  "num_hidden_layers": 32,
  "output_logit_soft_cap": 30.0,
  "pad_token_id": 1,
  "qk_dim_factor": 0.5,
  "return_last_states": true,
  "sequence_kernel": "native_sequence__native",
  "step_kernel": "native",
  "tie_word_embeddings": false,
  "transformers_version": "5.17.0",
  "use_bias": true,
  "use_cache": true,
  "v_dim_factor": 1.0,
  "vocab_size": 64,
  "weight_mode": "fused"
})";

json Small() {
  return {{"vocab_size", 256}, {"hidden_size", 64}, {"num_blocks", 2}, {"num_heads", 4}};
}

std::string ErrorOf(const json& j) {
  auto config = ParseModelConfig(j);
  return config.ok() ? std::string("OK") : std::string(config.status().message());
}

TEST_CASE("xLSTM-7b config.json parses to the published sizes", "[model_config]") {
  auto config = ParseModelConfig(json::parse(kXlstm7bConfig));
  REQUIRE(config.ok());
  const ModelConfig& c = *config;
  CHECK(c.vocab_size == 50304);
  CHECK(c.hidden_size == 4096);
  CHECK(c.num_blocks == 32);
  CHECK(c.num_heads == 8);
  CHECK(c.qk_dim() == 2048);
  CHECK(c.v_dim() == 4096);
  CHECK(c.qk_head_dim() == 256);
  CHECK(c.v_head_dim() == 512);
  CHECK(c.ffn_dim() == 10944);  // round_up(4096 * 2.667 = 10924.03, 64)
  CHECK(c.gate_soft_cap == 15.0);
  CHECK(c.output_logit_soft_cap == 30.0);
  CHECK(c.norm_eps == 1e-6);
  CHECK(c.eps == 1e-6);
  CHECK(c.chunk_size == 64);
  CHECK_FALSE(c.use_bias);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.weight_mode == WeightMode::kSingle);
  CHECK(c.bos_token_id == 0);
  CHECK(c.pad_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int>{2});
  CHECK_FALSE(c.mtp.has_value());
  // Per head: C 256x512 + n 256 + m 1; 8 heads. Per sequence (32 layers): 33,620,224 floats,
  // i.e. 134.5 MB in fp32 (DESIGN §5.2's "C alone 33.5 M" is 33,554,432).
  CHECK(c.StateFloatsPerLayer() == 8 * (256 * 512 + 256 + 1));
  CHECK(c.StateFloatsPerLayer() * c.num_blocks == 33620224);
  CHECK(ParameterCount(c) == 6865424896);  // DESIGN §2: 6.87e9
}

TEST_CASE("a config written by transformers parses, num_blocks winning over num_hidden_layers", "[model_config]") {
  auto config = ParseModelConfig(json::parse(kTransformersSmallConfig));
  REQUIRE(config.ok());
  CHECK(config->vocab_size == 64);
  CHECK(config->hidden_size == 32);
  CHECK(config->num_blocks == 2);  // what xLSTMModel builds
  CHECK(config->num_heads == 2);
  CHECK(config->qk_dim() == 16);
  CHECK(config->v_dim() == 32);
  CHECK(config->ffn_dim() == 128);  // 32 * 2.667 = 85.3 -> 128
  CHECK(config->eos_token_ids == std::vector<int>{2, 3});
  CHECK(config->weight_mode == WeightMode::kFused);
  CHECK(config->use_bias);
  CHECK_FALSE(config->tie_word_embeddings);
}

TEST_CASE("null caps and null token ids mean none", "[model_config]") {
  json j = Small();
  j["gate_soft_cap"] = nullptr;
  j["output_logit_soft_cap"] = nullptr;
  j["pad_token_id"] = nullptr;
  j["bos_token_id"] = nullptr;
  j["eos_token_id"] = nullptr;
  j["norm_eps"] = 1e-5;
  j["tie_word_embeddings"] = true;
  j["chunk_size"] = 16;
  auto config = ParseModelConfig(j);
  REQUIRE(config.ok());
  CHECK_FALSE(config->gate_soft_cap.has_value());
  CHECK_FALSE(config->output_logit_soft_cap.has_value());
  CHECK_FALSE(config->pad_token_id.has_value());
  CHECK_FALSE(config->bos_token_id.has_value());
  CHECK(config->eos_token_ids.empty());
  CHECK(config->norm_eps == 1e-5);
  CHECK(config->tie_word_embeddings);
  CHECK(config->chunk_size == 16);
}

TEST_CASE("aliases: embedding_dim and num_hidden_layers stand in for hidden_size and num_blocks", "[model_config]") {
  json j = {{"vocab_size", 256}, {"embedding_dim", 96}, {"num_hidden_layers", 3}, {"num_heads", 2}};
  auto config = ParseModelConfig(j);
  REQUIRE(config.ok());
  CHECK(config->hidden_size == 96);
  CHECK(config->num_blocks == 3);

  j["hidden_size"] = 96;
  j["embedding_dim"] = nullptr;  // transformers may leave the derived spelling null
  REQUIRE(ParseModelConfig(j).ok());

  j["embedding_dim"] = 128;
  CHECK(ErrorOf(j) == "config keys \"hidden_size\" (96) and \"embedding_dim\" (128) disagree");
  j.erase("embedding_dim");
  j["num_blocks"] = 4;
  config = ParseModelConfig(j);
  REQUIRE(config.ok());
  CHECK(config->num_blocks == 4);
}

TEST_CASE("defaults follow transformers' xLSTMConfig for absent optional keys", "[model_config]") {
  auto config = ParseModelConfig(Small());
  REQUIRE(config.ok());
  CHECK(config->qk_dim_factor == 0.5);
  CHECK(config->v_dim_factor == 1.0);
  CHECK(config->ffn_proj_factor == 2.667);
  CHECK(config->ffn_round_up_to_multiple_of == 64);
  CHECK(config->gate_soft_cap == 15.0);
  CHECK(config->output_logit_soft_cap == 30.0);
  CHECK(config->weight_mode == WeightMode::kSingle);
  CHECK(config->bos_token_id == 0);
  CHECK(config->pad_token_id == 1);
  CHECK(config->eos_token_ids == std::vector<int>{2});
}

TEST_CASE("derived sizes truncate and round exactly like transformers", "[model_config]") {
  // Expected values computed with Python: int(d * f) and
  // int(((x + m - 1) // m) * m) for x = d * f.
  struct Case {
    int hidden, heads;
    double qk_factor, v_factor, ffn_factor;
    int multiple, qk, v, ffn;
  };
  const Case cases[] = {
      {4096, 8, 0.5, 1.0, 2.667, 64, 2048, 4096, 10944},
      {192, 4, 0.5, 1.0, 2.667, 64, 96, 192, 512},
      {100, 1, 0.29, 1.3, 1.3, 7, 28, 130, 133},  // 100 * 0.29 = 28.999999999999996 -> 28
      {96, 1, 0.1, 1.0, 1.0, 32, 9, 96, 96},       // 9.600000000000001 -> 9
      {48, 1, 1.0, 1.0, 1.0, 32, 48, 48, 64},
      {128, 2, 0.5, 0.5, 2.5, 1, 64, 64, 320},
  };
  for (const Case& k : cases) {
    json j = {{"vocab_size", 16},          {"hidden_size", k.hidden},
              {"num_blocks", 1},           {"num_heads", k.heads},
              {"qk_dim_factor", k.qk_factor}, {"v_dim_factor", k.v_factor},
              {"ffn_proj_factor", k.ffn_factor}, {"ffn_round_up_to_multiple_of", k.multiple},
              {"eos_token_id", nullptr},   {"pad_token_id", 1}};
    auto config = ParseModelConfig(j);
    INFO("hidden " << k.hidden << " qk_factor " << k.qk_factor);
    REQUIRE(config.ok());
    CHECK(config->qk_dim() == k.qk);
    CHECK(config->v_dim() == k.v);
    CHECK(config->ffn_dim() == k.ffn);
  }
}

TEST_CASE("mtp: heads, head type and default trunk depth", "[model_config]") {
  json j = Small();
  j["mtp"] = {{"num_heads", 4}};
  auto config = ParseModelConfig(j);
  REQUIRE(config.ok());
  REQUIRE(config->mtp.has_value());
  CHECK(config->mtp->num_heads == 4);
  CHECK(config->mtp->head_type == MtpHeadType::kMlstmBlock);
  CHECK(config->mtp->trunk_layers == 1);  // num_blocks - 1: siblings of the last block

  j["mtp"] = {{"num_heads", 3}, {"head_type", "linear"}};
  config = ParseModelConfig(j);
  REQUIRE(config.ok());
  CHECK(config->mtp->head_type == MtpHeadType::kLinear);
  CHECK(config->mtp->trunk_layers == 2);  // the final hidden state

  j["mtp"] = {{"num_heads", 2}, {"head_type", "mlstm_block"}, {"trunk_layers", 0}};
  config = ParseModelConfig(j);
  REQUIRE(config.ok());
  CHECK(config->mtp->trunk_layers == 0);

  j["mtp"] = nullptr;
  config = ParseModelConfig(j);
  REQUIRE(config.ok());
  CHECK_FALSE(config->mtp.has_value());
}

TEST_CASE("every validation error names the key and the value", "[model_config]") {
  struct Case {
    const char* key;
    json value;  // discarded: erase the key
    const char* message;
  };
  const json kErase = json::value_t::discarded;
  const Case cases[] = {
      {"vocab_size", kErase, "config key \"vocab_size\" is missing"},
      {"num_heads", kErase, "config key \"num_heads\" is missing"},
      {"hidden_size", kErase, "config key \"hidden_size\" (or \"embedding_dim\") is missing"},
      {"num_blocks", kErase, "config key \"num_blocks\" (or \"num_hidden_layers\") is missing"},
      {"hidden_size", nullptr, "config keys \"hidden_size\" and \"embedding_dim\" are both null"},
      {"vocab_size", "256", "config key \"vocab_size\" must be an integer, got \"256\""},
      {"vocab_size", 256.5, "config key \"vocab_size\" must be an integer, got 256.5"},
      {"vocab_size", 0, "config key \"vocab_size\" must be a positive integer, got 0"},
      {"vocab_size", 4294967296LL, "config key \"vocab_size\" is out of range, got 4294967296"},
      {"hidden_size", -64, "config key \"hidden_size\" must be a positive integer, got -64"},
      {"num_blocks", 0, "config key \"num_blocks\" must be a positive integer, got 0"},
      {"num_heads", 0, "config key \"num_heads\" must be a positive integer, got 0"},
      {"num_heads", 3, "qk_dim = int(hidden_size * qk_dim_factor) = int(64 * 0.5) = 32 is not divisible by num_heads (3)"},
      {"v_dim_factor", 0.9, "v_dim = int(hidden_size * v_dim_factor) = int(64 * 0.9) = 57 is not divisible by num_heads (4)"},
      {"qk_dim_factor", 0.0, "config key \"qk_dim_factor\" must be a positive number, got 0"},
      {"qk_dim_factor", 0.001, "derived qk_dim = int(hidden_size * qk_dim_factor) is 0; it must be in 1..2^31-1"},
      {"v_dim_factor", "1.0", "config key \"v_dim_factor\" must be a number, got \"1.0\""},
      {"ffn_proj_factor", -1.0, "config key \"ffn_proj_factor\" must be a positive number, got -1"},
      {"ffn_round_up_to_multiple_of", 0, "config key \"ffn_round_up_to_multiple_of\" must be a positive integer, got 0"},
      {"chunk_size", 0, "config key \"chunk_size\" must be a positive integer, got 0"},
      {"gate_soft_cap", "15", "config key \"gate_soft_cap\" must be a number or null, got \"15\""},
      {"gate_soft_cap", 0.0, "config key \"gate_soft_cap\" must be a positive number, got 0"},
      {"output_logit_soft_cap", -30.0, "config key \"output_logit_soft_cap\" must be a positive number, got -30"},
      {"norm_eps", -1e-6, "config key \"norm_eps\" must be a non-negative number, got -1e-06"},
      {"eps", true, "config key \"eps\" must be a number, got true"},
      {"use_bias", 1, "config key \"use_bias\" must be true or false, got 1"},
      {"tie_word_embeddings", "no", "config key \"tie_word_embeddings\" must be true or false, got \"no\""},
      {"weight_mode", "split", "config key \"weight_mode\" is \"split\", expected \"single\" or \"fused\""},
      {"weight_mode", 1, "config key \"weight_mode\" must be a string, got 1"},
      {"model_type", "llama", "config key \"model_type\" is \"llama\", expected \"xlstm\""},
      {"bos_token_id", 256, "config key \"bos_token_id\" is 256, outside the vocabulary [0, 256)"},
      {"pad_token_id", -1, "config key \"pad_token_id\" is -1, outside the vocabulary [0, 256)"},
      {"eos_token_id", 300, "config key \"eos_token_id\" is 300, outside the vocabulary [0, 256)"},
      {"eos_token_id", json::array({2, 999}), "config key \"eos_token_id\" is 999, outside the vocabulary [0, 256)"},
      {"eos_token_id", json::array({2, "x"}),
       "config key \"eos_token_id\" must be an integer, a list of integers or null, got [2,\"x\"]"},
      {"eos_token_id", "2", "config key \"eos_token_id\" must be an integer, a list of integers or null, got \"2\""},
      {"mtp", 3, "config key \"mtp\" must be an object, got 3"},
      {"mtp", json::object(), "config key \"mtp.num_heads\" is missing"},
      {"mtp", {{"num_heads", 0}}, "config key \"mtp.num_heads\" must be >= 1, got 0"},
      {"mtp", {{"num_heads", 2}, {"head_type", "attention"}},
       "config key \"mtp.head_type\" is \"attention\", expected \"mlstm_block\" or \"linear\""},
      {"mtp", {{"num_heads", 2}, {"trunk_layers", 3}}, "config key \"mtp.trunk_layers\" is 3, expected 0..num_blocks (2)"},
      {"mtp", {{"num_heads", 2}, {"trunk_layer", 1}},
       "config key \"mtp\" has unknown key \"trunk_layer\" (expected num_heads, head_type, trunk_layers)"},
  };
  for (const Case& k : cases) {
    json j = Small();
    if (k.value.is_discarded()) {
      j.erase(k.key);
    } else {
      j[k.key] = k.value;
    }
    INFO(j.dump());
    CHECK(ErrorOf(j) == k.message);
  }
  CHECK(ErrorOf(json::array()) == "config must be a JSON object, got []");
}

TEST_CASE("LoadModelConfig reads a file and names it in errors", "[model_config]") {
  const std::string dir = testing::MakeTempDir("model_config");
  REQUIRE(!dir.empty());
  const std::string path = dir + "/config.json";
  {
    std::ofstream(path) << kXlstm7bConfig;
  }
  auto config = LoadModelConfig(path);
  REQUIRE(config.ok());
  CHECK(config->hidden_size == 4096);

  auto missing = LoadModelConfig(dir + "/absent.json");
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(std::string(missing.status().message()) == "cannot open model config " + dir + "/absent.json");

  {
    std::ofstream(path) << "{\"vocab_size\": 12,";
  }
  auto bad_json = LoadModelConfig(path);
  REQUIRE_FALSE(bad_json.ok());
  CHECK_THAT(std::string(bad_json.status().message()), Catch::StartsWith("model config " + path + " is not valid JSON"));

  {
    std::ofstream(path) << R"({"vocab_size": 12, "hidden_size": 8, "num_blocks": 1, "num_heads": 3})";
  }
  auto invalid = LoadModelConfig(path);
  REQUIRE_FALSE(invalid.ok());
  CHECK_THAT(std::string(invalid.status().message()), Catch::StartsWith(path + ": qk_dim"));
}

TEST_CASE("ModelConfigToJson round-trips through ParseModelConfig", "[model_config]") {
  ModelConfig c = *ParseModelConfig(json::parse(kTransformersSmallConfig));
  c.gate_soft_cap.reset();
  c.mtp = MtpConfig{3, MtpHeadType::kLinear, 2};
  c.bos_token_id.reset();
  auto back = ParseModelConfig(ModelConfigToJson(c));
  REQUIRE(back.ok());
  CHECK(ModelConfigToJson(*back) == ModelConfigToJson(c));
  CHECK_FALSE(back->bos_token_id.has_value());
  CHECK(back->mtp->num_heads == 3);
  CHECK(back->mtp->head_type == MtpHeadType::kLinear);
  CHECK(back->eos_token_ids == std::vector<int>{2, 3});
  CHECK_FALSE(back->gate_soft_cap.has_value());
}

}  // namespace
}  // namespace xlserve
