#include "engine/model/model_weights.h"

#include <filesystem>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/checkpoint.h"
#include "engine/model/checkpoint_layout.h"
#include "base/status_macros.h"
#include "spdlog/spdlog.h"

namespace xlserve {
namespace {

using TensorMap = std::unordered_map<std::string, TensorView>;

constexpr char kEmbeddingsName[] = "backbone.embeddings.weight";
constexpr char kLmHeadName[] = "lm_head.weight";

// Looks up every expected tensor and checks its shape; dtypes were checked when the files
// were opened (F32/BF16/F16 only, mixed across tensors is fine).
absl::StatusOr<TensorMap> FindExpectedTensors(const Checkpoint& checkpoint, const ModelConfig& config) {
  TensorMap found;
  for (const ExpectedTensor& want : ExpectedCheckpointTensors(config)) {
    const std::string expected = absl::StrCat("[", absl::StrJoin(want.shape, ", "), "] (", want.dims, ")");
    std::string stored_name = want.name;
    // A tied checkpoint saved with shared tensors de-duplicated may keep only the lm_head copy.
    if (config.tie_word_embeddings && want.name == kEmbeddingsName && !checkpoint.Contains(want.name) &&
        checkpoint.Contains(kLmHeadName)) {
      stored_name = kLmHeadName;
    }
    if (!checkpoint.Contains(stored_name)) {
      return absl::NotFoundError(absl::StrCat("tensor ", want.name, " is missing from checkpoint ",
                                              checkpoint.source(), "; expected ", expected));
    }
    ASSIGN_OR_RETURN(TensorView view, checkpoint.Find(stored_name));
    if (view.shape != want.shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", want.name, " has shape [",
                                                     absl::StrJoin(view.shape, ", "), "], expected ", expected,
                                                     " in checkpoint ", checkpoint.source()));
    }
    found.emplace(want.name, std::move(view));
  }
  return found;
}

// Views of one block's tensors under `prefix`; fused matrices are cut into the single layout
// in transformers' split order (q, k, v, ogate; igate, fgate; gate, up).
BlockWeights AssembleBlock(const TensorMap& tensors, const ModelConfig& c, const std::string& prefix) {
  // Absent names give absent views: only optional biases can be absent after the check.
  auto get = [&](const std::string& suffix) {
    auto it = tensors.find(prefix + suffix);
    return it == tensors.end() ? TensorView{} : it->second;
  };
  auto slice = [](const TensorView& t, int64_t begin, int64_t count) {
    return t.present() ? t.Slice(begin, count) : TensorView{};
  };
  const int64_t qk = c.qk_dim(), v = c.v_dim(), h = c.num_heads, ffn = c.ffn_dim();
  BlockWeights b;
  b.norm_mlstm_w = get("norm_mlstm.weight");
  b.norm_mlstm_b = get("norm_mlstm.bias");
  if (c.weight_mode == WeightMode::kSingle) {
    b.q_w = get("mlstm_layer.q.weight");
    b.q_b = get("mlstm_layer.q.bias");
    b.k_w = get("mlstm_layer.k.weight");
    b.k_b = get("mlstm_layer.k.bias");
    b.v_w = get("mlstm_layer.v.weight");
    b.v_b = get("mlstm_layer.v.bias");
    b.ogate_w = get("mlstm_layer.ogate_preact.weight");
    b.ogate_b = get("mlstm_layer.ogate_preact.bias");
    b.igate_w = get("mlstm_layer.igate_preact.weight");
    b.igate_b = get("mlstm_layer.igate_preact.bias");
    b.fgate_w = get("mlstm_layer.fgate_preact.weight");
    b.fgate_b = get("mlstm_layer.fgate_preact.bias");
    b.up_gate_w = get("ffn.proj_up_gate.weight");
    b.up_gate_b = get("ffn.proj_up_gate.bias");
    b.up_w = get("ffn.proj_up.weight");
    b.up_b = get("ffn.proj_up.bias");
  } else {
    const TensorView qkvo_w = get("mlstm_layer.qkv_opreact.weight");
    const TensorView qkvo_b = get("mlstm_layer.qkv_opreact.bias");
    b.q_w = slice(qkvo_w, 0, qk);
    b.q_b = slice(qkvo_b, 0, qk);
    b.k_w = slice(qkvo_w, qk, qk);
    b.k_b = slice(qkvo_b, qk, qk);
    b.v_w = slice(qkvo_w, 2 * qk, v);
    b.v_b = slice(qkvo_b, 2 * qk, v);
    b.ogate_w = slice(qkvo_w, 2 * qk + v, v);
    b.ogate_b = slice(qkvo_b, 2 * qk + v, v);
    const TensorView if_w = get("mlstm_layer.ifgate_preact.weight");
    const TensorView if_b = get("mlstm_layer.ifgate_preact.bias");
    b.igate_w = slice(if_w, 0, h);
    b.igate_b = slice(if_b, 0, h);
    b.fgate_w = slice(if_w, h, h);
    b.fgate_b = slice(if_b, h, h);
    const TensorView up_w = get("ffn.proj_up_gate_z.weight");
    const TensorView up_b = get("ffn.proj_up_gate_z.bias");
    b.up_gate_w = slice(up_w, 0, ffn);
    b.up_gate_b = slice(up_b, 0, ffn);
    b.up_w = slice(up_w, ffn, ffn);
    b.up_b = slice(up_b, ffn, ffn);
  }
  b.mh_norm_w = get("mlstm_layer.multihead_norm.weight");
  b.mh_norm_b = get("mlstm_layer.multihead_norm.bias");
  b.out_proj_w = get("mlstm_layer.out_proj.weight");
  b.out_proj_b = get("mlstm_layer.out_proj.bias");
  b.norm_ffn_w = get("norm_ffn.weight");
  b.norm_ffn_b = get("norm_ffn.bias");
  b.down_w = get("ffn.proj_down.weight");
  b.down_b = get("ffn.proj_down.bias");
  return b;
}

// Extra tensors are harmless (optimizer leftovers, biases a config turned off) but worth a note.
void WarnAboutUnusedTensors(const Checkpoint& checkpoint, const TensorMap& used, const ModelConfig& config) {
  std::vector<std::string> unused;
  for (const std::string& name : checkpoint.names()) {
    if (used.count(name) != 0) continue;
    if (config.tie_word_embeddings && name == kLmHeadName) continue;  // tied: one copy is redundant
    unused.push_back(name);
  }
  if (unused.empty()) return;
  spdlog::warn("checkpoint {}: ignoring {} unexpected tensor(s), e.g. {}", checkpoint.source(), unused.size(),
               unused.front());
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ModelWeights>> LoadModelWeights(const std::string& model_dir) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig((std::filesystem::path(model_dir) / "config.json").string()));
  return LoadModelWeights(model_dir, config);
}

absl::StatusOr<std::shared_ptr<const ModelWeights>> LoadModelWeights(const std::string& model_dir,
                                                                     const ModelConfig& config) {
  RETURN_IF_ERROR(ValidateModelConfig(config));
  ASSIGN_OR_RETURN(std::shared_ptr<const Checkpoint> checkpoint, Checkpoint::OpenDirectory(model_dir));
  ASSIGN_OR_RETURN(TensorMap tensors, FindExpectedTensors(*checkpoint, config));
  WarnAboutUnusedTensors(*checkpoint, tensors, config);

  return AssembleModelWeights(config, tensors, std::move(checkpoint));
}

std::shared_ptr<const ModelWeights> AssembleModelWeights(const ModelConfig& config, const TensorMap& tensors,
                                                         std::shared_ptr<const void> storage) {
  auto weights = std::make_shared<ModelWeights>();
  weights->config = config;
  weights->embeddings = tensors.at(kEmbeddingsName);
  for (int l = 0; l < config.num_blocks; ++l) {
    weights->blocks.push_back(AssembleBlock(tensors, config, BlockPrefix(l)));
  }
  weights->out_norm_w = tensors.at("backbone.out_norm.weight");
  weights->lm_head = config.tie_word_embeddings ? weights->embeddings : tensors.at(kLmHeadName);
  if (config.mtp) {
    for (int i = 1; i < config.mtp->num_heads; ++i) {
      if (config.mtp->head_type == MtpHeadType::kMlstmBlock) {
        weights->mtp_block_heads.push_back(AssembleBlock(tensors, config, MtpHeadPrefix(i)));
      } else {
        weights->mtp_linear_heads.push_back({tensors.at(MtpHeadPrefix(i) + "proj.weight")});
      }
    }
  }
  weights->storage = std::move(storage);
  return weights;
}

}  // namespace xlserve
