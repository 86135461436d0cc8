#include "engine/model/checkpoint_layout.h"

#include "absl/strings/str_cat.h"

namespace xlserve {
namespace {

// Appends the tensors of one xLSTM block whose names start with `prefix`.
void AppendBlockTensors(const ModelConfig& c, const std::string& prefix, std::vector<ExpectedTensor>& out) {
  const int64_t d = c.hidden_size, qk = c.qk_dim(), v = c.v_dim(), h = c.num_heads, ffn = c.ffn_dim();
  // A weight [rows, d] and, when `bias` says so, its bias [rows].
  auto linear = [&](const std::string& name, int64_t rows, const std::string& rows_words, int64_t cols,
                    const std::string& cols_words, bool bias) {
    out.push_back({prefix + name + ".weight", {rows, cols}, rows_words + " x " + cols_words});
    if (bias) out.push_back({prefix + name + ".bias", {rows}, rows_words});
  };
  auto norm = [&](const std::string& name, int64_t size, const std::string& words) {
    out.push_back({prefix + name + ".weight", {size}, words});
    if (c.use_bias) out.push_back({prefix + name + ".bias", {size}, words});
  };

  norm("norm_mlstm", d, "hidden_size");
  if (c.weight_mode == WeightMode::kSingle) {
    linear("mlstm_layer.q", qk, "qk_dim", d, "hidden_size", c.use_bias);
    linear("mlstm_layer.k", qk, "qk_dim", d, "hidden_size", c.use_bias);
    linear("mlstm_layer.v", v, "v_dim", d, "hidden_size", c.use_bias);
    linear("mlstm_layer.ogate_preact", v, "v_dim", d, "hidden_size", c.use_bias);
    linear("mlstm_layer.igate_preact", h, "num_heads", d, "hidden_size", true);
    linear("mlstm_layer.fgate_preact", h, "num_heads", d, "hidden_size", true);
  } else {
    linear("mlstm_layer.qkv_opreact", 2 * qk + 2 * v, "(2*qk_dim + 2*v_dim)", d, "hidden_size", c.use_bias);
    linear("mlstm_layer.ifgate_preact", 2 * h, "2*num_heads", d, "hidden_size", true);
  }
  norm("mlstm_layer.multihead_norm", v, "v_dim");
  linear("mlstm_layer.out_proj", d, "hidden_size", v, "v_dim", c.use_bias);
  norm("norm_ffn", d, "hidden_size");
  if (c.weight_mode == WeightMode::kSingle) {
    linear("ffn.proj_up_gate", ffn, "ffn_dim", d, "hidden_size", c.use_bias);
    linear("ffn.proj_up", ffn, "ffn_dim", d, "hidden_size", c.use_bias);
  } else {
    linear("ffn.proj_up_gate_z", 2 * ffn, "2*ffn_dim", d, "hidden_size", c.use_bias);
  }
  linear("ffn.proj_down", d, "hidden_size", ffn, "ffn_dim", c.use_bias);
}

}  // namespace

std::string BlockPrefix(int layer) { return absl::StrCat("backbone.blocks.", layer, "."); }
std::string MtpHeadPrefix(int head) { return absl::StrCat("mtp_heads.", head, "."); }

std::vector<ExpectedTensor> ExpectedCheckpointTensors(const ModelConfig& c) {
  const int64_t d = c.hidden_size;
  std::vector<ExpectedTensor> out;
  out.push_back({"backbone.embeddings.weight", {c.vocab_size, d}, "vocab_size x hidden_size"});
  for (int l = 0; l < c.num_blocks; ++l) AppendBlockTensors(c, BlockPrefix(l), out);
  out.push_back({"backbone.out_norm.weight", {d}, "hidden_size"});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, d}, "vocab_size x hidden_size"});
  if (c.mtp) {
    for (int i = 1; i < c.mtp->num_heads; ++i) {
      if (c.mtp->head_type == MtpHeadType::kMlstmBlock) {
        AppendBlockTensors(c, MtpHeadPrefix(i), out);
      } else {
        out.push_back({MtpHeadPrefix(i) + "proj.weight", {d, d}, "hidden_size x hidden_size"});
      }
    }
  }
  return out;
}

int64_t ParameterCount(const ModelConfig& config) {
  int64_t total = 0;
  for (const ExpectedTensor& t : ExpectedCheckpointTensors(config)) {
    int64_t n = 1;
    for (int64_t dim : t.shape) n *= dim;
    total += n;
  }
  return total;
}

}  // namespace xlserve
