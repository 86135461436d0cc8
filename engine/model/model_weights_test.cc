#include "engine/model/model_weights.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "engine/model/checkpoint_layout.h"
#include "engine/model/testing/safetensors_writer.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"

namespace xlserve {
namespace {

using testing::NamedTensor;
using testing::ToFloats;

// d 16, 2 heads, qk 8, v 16, ffn 64: every dimension distinct enough that a transposed or
// mis-sliced view shows up as a shape or value mismatch.
ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.num_blocks = 2;
  c.num_heads = 2;
  c.ffn_proj_factor = 2.5;  // 40 -> 64
  c.bos_token_id = 0;
  c.eos_token_ids = {2};
  return c;
}

std::map<std::string, NamedTensor> ByName(const std::vector<NamedTensor>& tensors) {
  std::map<std::string, NamedTensor> out;
  for (const NamedTensor& t : tensors) out[t.name] = t;
  return out;
}

// What the writer stores for `t`, read back as floats.
std::vector<float> Stored(const NamedTensor& t) {
  std::vector<float> out;
  for (float v : t.values) out.push_back(testing::RoundTripThrough(t.dtype, v));
  return out;
}

// Concatenation of the named tensors along rows, as transformers' fused layers hold them.
NamedTensor Concat(const std::map<std::string, NamedTensor>& single, const std::string& name,
                   const std::vector<std::string>& parts) {
  NamedTensor out{name, single.at(parts[0]).dtype, single.at(parts[0]).shape, {}};
  out.shape[0] = 0;
  for (const std::string& part : parts) {
    const NamedTensor& t = single.at(part);
    out.shape[0] += t.shape[0];
    out.values.insert(out.values.end(), t.values.begin(), t.values.end());
  }
  return out;
}

// The single-layout tensors rewritten into the fused layout.
std::vector<NamedTensor> Fuse(const std::vector<NamedTensor>& tensors, const ModelConfig& c) {
  auto single = ByName(tensors);
  std::vector<NamedTensor> out;
  for (const NamedTensor& t : tensors) {
    if (t.name.find(".mlstm_layer.q.") == std::string::npos && t.name.find(".mlstm_layer.k.") == std::string::npos &&
        t.name.find(".mlstm_layer.v.") == std::string::npos && t.name.find("ogate_preact") == std::string::npos &&
        t.name.find("igate_preact") == std::string::npos && t.name.find("fgate_preact") == std::string::npos &&
        t.name.find("proj_up") == std::string::npos) {
      out.push_back(t);
    }
  }
  for (int l = 0; l < c.num_blocks; ++l) {
    const std::string p = BlockPrefix(l);
    std::vector<std::string> kinds = {"weight"};
    if (c.use_bias) kinds.push_back("bias");
    for (const std::string& kind : kinds) {
      out.push_back(Concat(single, p + "mlstm_layer.qkv_opreact." + kind,
                           {p + "mlstm_layer.q." + kind, p + "mlstm_layer.k." + kind, p + "mlstm_layer.v." + kind,
                            p + "mlstm_layer.ogate_preact." + kind}));
      out.push_back(Concat(single, p + "ffn.proj_up_gate_z." + kind,
                           {p + "ffn.proj_up_gate." + kind, p + "ffn.proj_up." + kind}));
    }
    for (const std::string kind : {"weight", "bias"}) {
      out.push_back(Concat(single, p + "mlstm_layer.ifgate_preact." + kind,
                           {p + "mlstm_layer.igate_preact." + kind, p + "mlstm_layer.fgate_preact." + kind}));
    }
  }
  return out;
}

// Every view of a block, with the name of the single-layout tensor it must equal.
std::vector<std::pair<const TensorView*, std::string>> BlockViews(const BlockWeights& b, const std::string& p) {
  return {{&b.norm_mlstm_w, p + "norm_mlstm.weight"},
          {&b.norm_mlstm_b, p + "norm_mlstm.bias"},
          {&b.q_w, p + "mlstm_layer.q.weight"},
          {&b.q_b, p + "mlstm_layer.q.bias"},
          {&b.k_w, p + "mlstm_layer.k.weight"},
          {&b.k_b, p + "mlstm_layer.k.bias"},
          {&b.v_w, p + "mlstm_layer.v.weight"},
          {&b.v_b, p + "mlstm_layer.v.bias"},
          {&b.ogate_w, p + "mlstm_layer.ogate_preact.weight"},
          {&b.ogate_b, p + "mlstm_layer.ogate_preact.bias"},
          {&b.igate_w, p + "mlstm_layer.igate_preact.weight"},
          {&b.igate_b, p + "mlstm_layer.igate_preact.bias"},
          {&b.fgate_w, p + "mlstm_layer.fgate_preact.weight"},
          {&b.fgate_b, p + "mlstm_layer.fgate_preact.bias"},
          {&b.mh_norm_w, p + "mlstm_layer.multihead_norm.weight"},
          {&b.mh_norm_b, p + "mlstm_layer.multihead_norm.bias"},
          {&b.out_proj_w, p + "mlstm_layer.out_proj.weight"},
          {&b.out_proj_b, p + "mlstm_layer.out_proj.bias"},
          {&b.norm_ffn_w, p + "norm_ffn.weight"},
          {&b.norm_ffn_b, p + "norm_ffn.bias"},
          {&b.up_gate_w, p + "ffn.proj_up_gate.weight"},
          {&b.up_gate_b, p + "ffn.proj_up_gate.bias"},
          {&b.up_w, p + "ffn.proj_up.weight"},
          {&b.up_b, p + "ffn.proj_up.bias"},
          {&b.down_w, p + "ffn.proj_down.weight"},
          {&b.down_b, p + "ffn.proj_down.bias"}};
}

// Checks every view of `w` against the single-layout tensors it was written from: absent
// exactly when the tensor does not exist, else the same shape and stored values.
void CheckMatches(const ModelWeights& w, const std::map<std::string, NamedTensor>& single) {
  auto check = [&](const TensorView& view, const std::string& name) {
    INFO(name);
    auto it = single.find(name);
    if (it == single.end()) {
      CHECK_FALSE(view.present());
      return;
    }
    REQUIRE(view.present());
    CHECK(view.shape == it->second.shape);
    CHECK(view.dtype == it->second.dtype);
    CHECK(ToFloats(view) == Stored(it->second));
  };
  check(w.embeddings, "backbone.embeddings.weight");
  check(w.out_norm_w, "backbone.out_norm.weight");
  check(w.lm_head, w.config.tie_word_embeddings ? "backbone.embeddings.weight" : "lm_head.weight");
  REQUIRE(w.blocks.size() == static_cast<size_t>(w.config.num_blocks));
  for (int l = 0; l < w.config.num_blocks; ++l) {
    for (const auto& [view, name] : BlockViews(w.blocks[l], BlockPrefix(l))) check(*view, name);
  }
  for (size_t i = 0; i < w.mtp_block_heads.size(); ++i) {
    for (const auto& [view, name] : BlockViews(w.mtp_block_heads[i], MtpHeadPrefix(i + 1))) check(*view, name);
  }
  for (size_t i = 0; i < w.mtp_linear_heads.size(); ++i) {
    check(w.mtp_linear_heads[i].proj_w, MtpHeadPrefix(i + 1) + "proj.weight");
  }
}

std::string ErrorOf(const absl::StatusOr<std::shared_ptr<const ModelWeights>>& weights) {
  return weights.ok() ? std::string("OK") : std::string(weights.status().message());
}

TEST_CASE("a single-layout checkpoint loads into per-block views", "[model_weights]") {
  for (bool use_bias : {false, true}) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      ModelConfig c = TinyConfig();
      c.use_bias = use_bias;
      INFO("use_bias " << use_bias << " dtype " << DTypeName(dtype));
      const auto tensors = testing::RandomModelTensors(c, 7, dtype);
      const std::string dir = testing::MakeTempDir("weights_single");
      REQUIRE(testing::WriteModelDirectory(dir, c, tensors).ok());
      auto weights = LoadModelWeights(dir);
      REQUIRE(weights.ok());
      CHECK((*weights)->config.qk_dim() == 8);
      CHECK((*weights)->config.ffn_dim() == 64);
      CHECK((*weights)->blocks[1].q_w.shape == std::vector<int64_t>{8, 16});
      CHECK((*weights)->blocks[0].igate_b.present());  // gate biases exist even without use_bias
      CHECK((*weights)->blocks[0].q_b.present() == use_bias);
      CheckMatches(**weights, ByName(tensors));
    }
  }
}

TEST_CASE("fused and single layouts of the same numbers give identical views", "[model_weights]") {
  for (bool use_bias : {false, true}) {
    ModelConfig c = TinyConfig();
    c.use_bias = use_bias;
    INFO("use_bias " << use_bias);
    const auto tensors = testing::RandomModelTensors(c, 11, DType::kBF16);
    const std::string single_dir = testing::MakeTempDir("weights_single");
    REQUIRE(testing::WriteModelDirectory(single_dir, c, tensors).ok());

    ModelConfig fused = c;
    fused.weight_mode = WeightMode::kFused;
    const std::string fused_dir = testing::MakeTempDir("weights_fused");
    REQUIRE(testing::WriteModelDirectory(fused_dir, fused, Fuse(tensors, c)).ok());

    auto from_single = LoadModelWeights(single_dir);
    auto from_fused = LoadModelWeights(fused_dir);
    REQUIRE(from_single.ok());
    REQUIRE(from_fused.ok());
    CHECK((*from_fused)->config.weight_mode == WeightMode::kFused);
    CheckMatches(**from_fused, ByName(tensors));
    CheckMatches(**from_single, ByName(tensors));
  }
}

TEST_CASE("tied embeddings: lm_head is the embedding table, with or without lm_head.weight", "[model_weights]") {
  ModelConfig c = TinyConfig();
  c.tie_word_embeddings = true;
  auto tensors = testing::RandomModelTensors(c, 3);
  const std::string dir = testing::MakeTempDir("weights_tied");
  REQUIRE(testing::WriteModelDirectory(dir, c, tensors).ok());
  auto weights = LoadModelWeights(dir);
  REQUIRE(weights.ok());
  CHECK((*weights)->lm_head.data == (*weights)->embeddings.data);
  CHECK((*weights)->lm_head.shape == std::vector<int64_t>{32, 16});

  tensors.push_back({"lm_head.weight", DType::kF32, {32, 16}, std::vector<float>(32 * 16, 0.5f)});
  REQUIRE(testing::WriteModelDirectory(dir, c, tensors).ok());
  weights = LoadModelWeights(dir);
  REQUIRE(weights.ok());
  CHECK((*weights)->lm_head.data == (*weights)->embeddings.data);
  CHECK(ToFloats((*weights)->embeddings) == Stored(ByName(tensors).at("backbone.embeddings.weight")));

  // Shared tensors saved once under the lm_head name only.
  tensors.erase(tensors.begin());  // backbone.embeddings.weight comes first
  REQUIRE(testing::WriteModelDirectory(dir, c, tensors).ok());
  weights = LoadModelWeights(dir);
  REQUIRE(weights.ok());
  CHECK((*weights)->lm_head.data == (*weights)->embeddings.data);
  CHECK(ToFloats((*weights)->embeddings) == std::vector<float>(32 * 16, 0.5f));

  // Untied, the embeddings are required whatever else is there.
  c.tie_word_embeddings = false;
  CHECK_THAT(ErrorOf(LoadModelWeights(dir, c)), Catch::StartsWith("tensor backbone.embeddings.weight is missing"));
}

TEST_CASE("a sharded checkpoint with mixed dtypes loads the same views", "[model_weights]") {
  ModelConfig c = TinyConfig();
  auto tensors = testing::RandomModelTensors(c, 5);
  const DType cycle[] = {DType::kF32, DType::kBF16, DType::kF16};
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].dtype = cycle[i % 3];
  const std::string dir = testing::MakeTempDir("weights_sharded");
  REQUIRE(testing::WriteModelDirectory(dir, c, {}).ok());
  std::filesystem::remove(dir + "/model.safetensors");
  REQUIRE(testing::WriteShardedSafetensors(dir, tensors, 4).ok());
  auto weights = LoadModelWeights(dir);
  REQUIRE(weights.ok());
  CHECK((*weights)->storage != nullptr);
  CheckMatches(**weights, ByName(tensors));
}

TEST_CASE("multi-token heads: block heads and linear heads", "[model_weights]") {
  for (MtpHeadType type : {MtpHeadType::kMlstmBlock, MtpHeadType::kLinear}) {
    ModelConfig c = TinyConfig();
    c.mtp = MtpConfig{3, type, type == MtpHeadType::kMlstmBlock ? 1 : 2};
    const auto tensors = testing::RandomModelTensors(c, 9);
    const std::string dir = testing::MakeTempDir("weights_mtp");
    REQUIRE(testing::WriteModelDirectory(dir, c, tensors).ok());
    auto weights = LoadModelWeights(dir);
    REQUIRE(weights.ok());
    if (type == MtpHeadType::kMlstmBlock) {
      CHECK((*weights)->mtp_block_heads.size() == 2);
      CHECK((*weights)->mtp_linear_heads.empty());
      CHECK(ByName(tensors).count("mtp_heads.2.mlstm_layer.q.weight") == 1);
    } else {
      CHECK((*weights)->mtp_block_heads.empty());
      CHECK((*weights)->mtp_linear_heads.size() == 2);
      CHECK((*weights)->mtp_linear_heads[1].proj_w.shape == std::vector<int64_t>{16, 16});
    }
    CheckMatches(**weights, ByName(tensors));

    // Head 2's tensors gone: the error names the first missing one.
    std::vector<NamedTensor> without;
    for (const NamedTensor& t : tensors) {
      if (t.name.rfind("mtp_heads.2.", 0) != 0) without.push_back(t);
    }
    REQUIRE(testing::WriteModelDirectory(dir, c, without).ok());
    CHECK_THAT(ErrorOf(LoadModelWeights(dir)), Catch::StartsWith(type == MtpHeadType::kMlstmBlock
                                                                     ? "tensor mtp_heads.2.norm_mlstm.weight is missing"
                                                                     : "tensor mtp_heads.2.proj.weight is missing"));
  }
}

TEST_CASE("unexpected extra tensors are ignored with one warning", "[model_weights]") {
  ModelConfig c = TinyConfig();
  auto tensors = testing::RandomModelTensors(c, 2);
  tensors.push_back({"optimizer.step", DType::kF32, {1}, {1}});
  tensors.push_back({"backbone.blocks.0.mlstm_layer.q.bias", DType::kF32, {8}, std::vector<float>(8)});
  const std::string dir = testing::MakeTempDir("weights_extra");
  REQUIRE(testing::WriteModelDirectory(dir, c, tensors).ok());

  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  auto weights = LoadModelWeights(dir);
  spdlog::set_default_logger(previous);

  REQUIRE(weights.ok());
  CHECK_FALSE((*weights)->blocks[0].q_b.present());  // use_bias is off: the stray bias is not used
  const auto lines = sink->last_formatted();
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Catch::Contains("ignoring 2 unexpected tensor(s), e.g. backbone.blocks.0.mlstm_layer.q.bias"));
}

TEST_CASE("loading errors name the tensor, the expected shape and the checkpoint", "[model_weights]") {
  ModelConfig c = TinyConfig();
  const auto good = testing::RandomModelTensors(c, 4);
  const std::string dir = testing::MakeTempDir("weights_errors");
  const std::string file = dir + "/model.safetensors";
  auto load_with = [&](std::vector<NamedTensor> tensors) {
    REQUIRE(testing::WriteModelDirectory(dir, c, tensors).ok());
    return ErrorOf(LoadModelWeights(dir));
  };
  auto replaced = [&](const std::string& name, std::vector<int64_t> shape) {
    std::vector<NamedTensor> tensors = good;
    for (NamedTensor& t : tensors) {
      if (t.name != name) continue;
      t.shape = shape;
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      t.values.assign(n, 0.0f);
    }
    return tensors;
  };

  CHECK(load_with(replaced("backbone.blocks.1.mlstm_layer.q.weight", {4, 16})) ==
        "tensor backbone.blocks.1.mlstm_layer.q.weight has shape [4, 16], expected [8, 16] (qk_dim x hidden_size)"
        " in checkpoint " + file);
  CHECK(load_with(replaced("backbone.blocks.0.mlstm_layer.out_proj.weight", {16, 8})) ==
        "tensor backbone.blocks.0.mlstm_layer.out_proj.weight has shape [16, 8], expected [16, 16] (hidden_size x v_dim)"
        " in checkpoint " + file);
  CHECK(load_with(replaced("backbone.blocks.0.mlstm_layer.fgate_preact.bias", {2, 1})) ==
        "tensor backbone.blocks.0.mlstm_layer.fgate_preact.bias has shape [2, 1], expected [2] (num_heads)"
        " in checkpoint " + file);
  CHECK(load_with(replaced("backbone.blocks.1.ffn.proj_down.weight", {64, 16})) ==
        "tensor backbone.blocks.1.ffn.proj_down.weight has shape [64, 16], expected [16, 64] (hidden_size x ffn_dim)"
        " in checkpoint " + file);

  std::vector<NamedTensor> no_lm_head;
  for (const NamedTensor& t : good) {
    if (t.name != "lm_head.weight") no_lm_head.push_back(t);
  }
  auto missing = load_with(no_lm_head);
  CHECK(missing == "tensor lm_head.weight is missing from checkpoint " + file +
                       "; expected [32, 16] (vocab_size x hidden_size)");

  // A fused config over single-layout files misses the fused names.
  ModelConfig fused = c;
  fused.weight_mode = WeightMode::kFused;
  REQUIRE(testing::WriteModelDirectory(dir, c, good).ok());
  CHECK_THAT(ErrorOf(LoadModelWeights(dir, fused)),
             Catch::StartsWith("tensor backbone.blocks.0.mlstm_layer.qkv_opreact.weight is missing"));

  // An invalid config built in code is refused before any file is read.
  ModelConfig bad = c;
  bad.num_heads = 3;
  CHECK_THAT(ErrorOf(LoadModelWeights(dir, bad)), Catch::Contains("not divisible by num_heads (3)"));
}

TEST_CASE("file-level errors surface through LoadModelWeights", "[model_weights]") {
  const std::string dir = testing::MakeTempDir("weights_files");
  CHECK(ErrorOf(LoadModelWeights(dir)) == "cannot open model config " + dir + "/config.json");

  ModelConfig c = TinyConfig();
  REQUIRE(testing::WriteModelDirectory(dir, c, testing::RandomModelTensors(c, 1)).ok());
  std::filesystem::remove(dir + "/model.safetensors");
  CHECK(ErrorOf(LoadModelWeights(dir)) == "no model.safetensors or model.safetensors.index.json in " + dir);

  // A tensor of an unsupported dtype: the file is rejected with the tensor's name.
  {
    const std::string header = R"({"backbone.embeddings.weight": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})";
    std::string bytes(8, '\0');
    bytes[0] = static_cast<char>(header.size());
    bytes += header;
    bytes.append(4, '\0');
    std::ofstream(dir + "/model.safetensors", std::ios::binary).write(bytes.data(), bytes.size());
  }
  CHECK(ErrorOf(LoadModelWeights(dir)) ==
        "safetensors file " + dir + "/model.safetensors: tensor backbone.embeddings.weight has unsupported dtype I32 "
        "(supported: F32, BF16, F16)");

  // Truncated checkpoint.
  REQUIRE(testing::WriteModelDirectory(dir, c, testing::RandomModelTensors(c, 1)).ok());
  std::filesystem::resize_file(dir + "/model.safetensors", std::filesystem::file_size(dir + "/model.safetensors") - 3);
  CHECK_THAT(ErrorOf(LoadModelWeights(dir)), Catch::Contains("truncated or corrupt file"));

  // Sharded checkpoint with a shard missing.
  const std::string sharded = testing::MakeTempDir("weights_missing_shard");
  REQUIRE(testing::WriteModelDirectory(sharded, c, {}).ok());
  std::filesystem::remove(sharded + "/model.safetensors");
  REQUIRE(testing::WriteShardedSafetensors(sharded, testing::RandomModelTensors(c, 1), 3).ok());
  std::filesystem::remove(sharded + "/model-00002-of-00003.safetensors");
  CHECK_THAT(ErrorOf(LoadModelWeights(sharded)),
             Catch::StartsWith("shard model-00002-of-00003.safetensors of " + sharded + "/model.safetensors.index.json"));
}

}  // namespace
}  // namespace xlserve
