#include "engine/parallel/rank_weights.h"

#include <cstring>

namespace xlserve {
namespace {

TensorView RowSlice(const TensorView& t, ShardRange r) { return t.present() ? t.Slice(r.begin, r.count) : t; }

// Columns [r.begin, r.begin + r.count) of the 2-D `t`, copied into `copies`.
TensorView ColumnSlice(const TensorView& t, ShardRange r, std::vector<std::vector<char>>* copies) {
  if (r.begin == 0 && r.count == t.cols()) return t;
  const int64_t size = DTypeSize(t.dtype);
  std::vector<char>& bytes = copies->emplace_back(t.rows() * r.count * size);
  for (int64_t row = 0; row < t.rows(); ++row) {
    std::memcpy(bytes.data() + row * r.count * size,
                static_cast<const char*>(t.data) + (row * t.cols() + r.begin) * size, r.count * size);
  }
  TensorView out = t;
  out.shape = {t.rows(), r.count};
  out.data = bytes.data();
  return out;
}

BlockWeights ShardBlock(const BlockWeights& w, const TensorParallelPlan& plan, int rank,
                        std::vector<std::vector<char>>* copies) {
  const ShardRange heads = plan.heads(rank), qk = plan.qk_columns(rank), v = plan.v_columns(rank);
  const ShardRange ffn = plan.ffn(rank);
  BlockWeights s = w;
  s.q_w = RowSlice(w.q_w, qk);
  s.q_b = RowSlice(w.q_b, qk);
  s.k_w = RowSlice(w.k_w, qk);
  s.k_b = RowSlice(w.k_b, qk);
  s.v_w = RowSlice(w.v_w, v);
  s.v_b = RowSlice(w.v_b, v);
  s.ogate_w = RowSlice(w.ogate_w, v);
  s.ogate_b = RowSlice(w.ogate_b, v);
  s.igate_w = RowSlice(w.igate_w, heads);
  s.igate_b = RowSlice(w.igate_b, heads);
  s.fgate_w = RowSlice(w.fgate_w, heads);
  s.fgate_b = RowSlice(w.fgate_b, heads);
  s.mh_norm_w = RowSlice(w.mh_norm_w, v);
  s.mh_norm_b = RowSlice(w.mh_norm_b, v);
  s.out_proj_w = ColumnSlice(w.out_proj_w, v, copies);
  s.up_gate_w = RowSlice(w.up_gate_w, ffn);
  s.up_gate_b = RowSlice(w.up_gate_b, ffn);
  s.up_w = RowSlice(w.up_w, ffn);
  s.up_b = RowSlice(w.up_b, ffn);
  s.down_w = ColumnSlice(w.down_w, ffn, copies);
  return s;
}

}  // namespace

RankWeights ShardWeights(const ModelWeights& full, const TensorParallelPlan& plan, int rank) {
  RankWeights out;
  for (const BlockWeights& b : full.blocks) out.blocks.push_back(ShardBlock(b, plan, rank, &out.copies));
  for (const BlockWeights& b : full.mtp_block_heads) {
    out.mtp_block_heads.push_back(ShardBlock(b, plan, rank, &out.copies));
  }
  out.lm_head = RowSlice(full.lm_head, plan.vocab(rank));
  return out;
}

}  // namespace xlserve
