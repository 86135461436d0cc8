#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <string>
#include <thread>

#include "engine/backend_validation.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/mlstm_chunkwise.h"
#include "engine/sampling/logprobs.h"

namespace xlserve {

using cpu::Linear;

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(
    std::shared_ptr<const ModelWeights> weights, const CpuBackendOptions& options) {
  if (weights == nullptr) return absl::InvalidArgumentError("cpu backend: no model weights");
  if (options.chunk_size < 1) {
    return absl::InvalidArgumentError("cpu backend: chunk_size must be >= 1, got " +
                                      std::to_string(options.chunk_size));
  }
  absl::StatusOr<TensorParallelPlan> plan = TensorParallelPlan::Create(weights->config, options.tensor_parallel);
  if (!plan.ok()) return absl::InvalidArgumentError("cpu backend: " + std::string(plan.status().message()));
  return std::unique_ptr<CpuBackend>(new CpuBackend(std::move(weights), options, *plan));
}

CpuBackend::CpuBackend(std::shared_ptr<const ModelWeights> weights, const CpuBackendOptions& options,
                       TensorParallelPlan plan)
    : weights_(std::move(weights)),
      options_(options),
      layout_(StateLayout::ForModel(weights_->config)),
      pool_(options.num_threads),
      plan_(plan) {
  const int n = plan_.ranks();
  if (n > 1) group_ = std::make_unique<InProcessGroup>(n);
  for (int r = 0; r < n; ++r) {
    Rank rank;
    rank.index = r;
    rank.weights = ShardWeights(*weights_, plan_, r);
    if (n == 1) {
      rank.pool = &pool_;
      rank.comm = &single_;
    } else {
      // The ranks share the backend's thread budget.
      rank_pools_.push_back(std::make_unique<ThreadPool>(std::max(1, pool_.num_threads() / n)));
      rank.pool = rank_pools_.back().get();
      rank.comm = &group_->rank(r);
    }
    ranks_.push_back(std::move(rank));
  }
}

absl::Status CpuBackend::AllocateSlots(int num_slots) {
  if (num_slots < 1) return absl::InvalidArgumentError("need at least one state slot");
  const double bytes = static_cast<double>(num_slots) * layout_.slot_floats() * sizeof(float);
  try {
    states_.assign(static_cast<size_t>(num_slots) * layout_.slot_floats(), 0.0f);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("cannot allocate " + std::to_string(num_slots) +
                                        " state slots (" + std::to_string(bytes / 1e6) + " MB)");
  }
  num_slots_ = num_slots;
  deferred_.assign(num_slots, DeferredSlot{});
  return absl::OkStatus();
}

absl::Status CpuBackend::CheckSlot(int slot, const char* op, int64_t buffer_floats) const {
  if (slot < 0 || slot >= num_slots_) {
    return absl::OutOfRangeError(std::string(op) + ": state slot " + std::to_string(slot) +
                                 " out of range (" + std::to_string(num_slots_) + " slots)");
  }
  if (buffer_floats >= 0 && buffer_floats != layout_.slot_floats()) {
    return absl::InvalidArgumentError(std::string(op) + ": buffer has " + std::to_string(buffer_floats) +
                                      " floats, a slot has " + std::to_string(layout_.slot_floats()));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::ResetSlot(int slot) {
  if (absl::Status st = CheckSlot(slot, "ResetSlot", -1); !st.ok()) return st;
  std::fill_n(SlotData(slot), layout_.slot_floats(), 0.0f);
  deferred_[slot].num_tokens = 0;
  return absl::OkStatus();
}

absl::Status CpuBackend::ReadSlot(int slot, std::span<float> out) const {
  if (absl::Status st = CheckSlot(slot, "ReadSlot", static_cast<int64_t>(out.size())); !st.ok()) return st;
  const float* src = states_.data() + slot * layout_.slot_floats();
  std::copy(src, src + layout_.slot_floats(), out.begin());
  return absl::OkStatus();
}

absl::Status CpuBackend::WriteSlot(int slot, std::span<const float> in) {
  if (absl::Status st = CheckSlot(slot, "WriteSlot", static_cast<int64_t>(in.size())); !st.ok()) return st;
  std::copy(in.begin(), in.end(), SlotData(slot));
  deferred_[slot].num_tokens = 0;
  return absl::OkStatus();
}

absl::Status CpuBackend::AllocateSnapshots(int device, int host) {
  if (device < 0 || host < 0) return absl::InvalidArgumentError("snapshot buffer counts must be >= 0");
  snapshots_[0].clear();
  snapshots_[1].clear();
  snapshots_[0].resize(device);
  snapshots_[1].resize(host);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>*> CpuBackend::Snapshot(SnapshotRef ref, const char* op) {
  auto& tier = snapshots_[static_cast<int>(ref.tier)];
  if (ref.index < 0 || ref.index >= static_cast<int>(tier.size())) {
    return absl::OutOfRangeError(std::string(op) + ": snapshot buffer " + std::to_string(ref.index) +
                                 " out of range (" + std::to_string(tier.size()) + " in its tier)");
  }
  std::vector<float>& buffer = tier[ref.index];
  if (buffer.empty()) buffer.resize(layout_.slot_floats());
  return &buffer;
}

absl::Status CpuBackend::SaveSnapshot(int slot, SnapshotRef dst) {
  if (absl::Status st = CheckSlot(slot, "SaveSnapshot", -1); !st.ok()) return st;
  absl::StatusOr<std::vector<float>*> buffer = Snapshot(dst, "SaveSnapshot");
  if (!buffer.ok()) return buffer.status();
  std::copy_n(SlotData(slot), layout_.slot_floats(), (*buffer)->data());
  return absl::OkStatus();
}

absl::Status CpuBackend::RestoreSnapshot(SnapshotRef src, int slot) {
  if (absl::Status st = CheckSlot(slot, "RestoreSnapshot", -1); !st.ok()) return st;
  absl::StatusOr<std::vector<float>*> buffer = Snapshot(src, "RestoreSnapshot");
  if (!buffer.ok()) return buffer.status();
  std::copy((*buffer)->begin(), (*buffer)->end(), SlotData(slot));
  deferred_[slot].num_tokens = 0;
  return absl::OkStatus();
}

absl::Status CpuBackend::CopySnapshot(SnapshotRef src, SnapshotRef dst) {
  absl::StatusOr<std::vector<float>*> from = Snapshot(src, "CopySnapshot");
  if (!from.ok()) return from.status();
  absl::StatusOr<std::vector<float>*> to = Snapshot(dst, "CopySnapshot");
  if (!to.ok()) return to.status();
  if (*from != *to) **to = **from;
  return absl::OkStatus();
}

absl::Status CpuBackend::Forward(std::span<const SequenceInput> batch, ForwardOutput* out) {
  if (absl::Status st = ValidateForwardBatch(batch, num_slots_, weights_->config.vocab_size,
                                            weights_->config.mtp.has_value(), true, false);
      !st.ok()) {
    return st;
  }
  const ModelConfig& cfg = weights_->config;
  Pass pass;
  pass.batch = batch;
  pass.out = out;
  pass.row_begin.assign(batch.size() + 1, 0);
  for (size_t i = 0; i < batch.size(); ++i) {
    pass.row_begin[i + 1] = pass.row_begin[i] + static_cast<int64_t>(batch[i].tokens.size());
  }
  for (const SequenceInput& s : batch) pass.any_heads = pass.any_heads || s.mtp_heads;
  // Deferred sequences keep each layer's mLSTM inputs for Commit(), sized here so that the
  // ranks fill their heads' columns side by side.
  const int head_blocks = static_cast<int>(weights_->mtp_block_heads.size());  // none for linear heads
  for (size_t i = 0; i < batch.size(); ++i) {
    DeferredSlot& pending = deferred_[batch[i].slot];
    pending.num_tokens = batch[i].defer_commit ? static_cast<int>(batch[i].tokens.size()) : 0;
    if (!batch[i].defer_commit) continue;
    pending.layers.assign(layout_.num_layers, DeferredLayer{});
    const size_t tokens = batch[i].tokens.size();
    const int layers = cfg.num_blocks + (batch[i].mtp_heads ? head_blocks : 0);
    for (int l = 0; l < layers; ++l) {
      DeferredLayer& keep = pending.layers[l];
      keep.k.resize(tokens * cfg.qk_dim());
      keep.v.resize(tokens * cfg.v_dim());
      keep.igate.resize(tokens * cfg.num_heads);
      keep.fgate.resize(tokens * cfg.num_heads);
    }
  }

  // Only the rows whose logits were asked for go through out_norm and the unembedding.
  out->vocab_size = cfg.vocab_size;
  out->row_offset.assign(batch.size() + 1, 0);
  for (size_t i = 0; i < batch.size(); ++i) {
    const int64_t first = batch[i].all_logits ? pass.row_begin[i] : pass.row_begin[i + 1] - 1;
    for (int64_t r = first; r < pass.row_begin[i + 1]; ++r) {
      pass.picked.push_back(r);
      pass.picked_seq.push_back(static_cast<int>(i));
    }
    out->row_offset[i + 1] = static_cast<int>(pass.picked.size());
  }
  const size_t vocab = static_cast<size_t>(cfg.vocab_size);
  out->logits.resize(pass.picked.size() * vocab);
  out->num_mtp_heads = pass.any_heads ? cfg.mtp->num_heads - 1 : 0;
  out->mtp_logits.assign(pass.any_heads ? pass.picked.size() * out->num_mtp_heads * vocab : 0, 0.0f);

  std::vector<std::thread> others;
  for (size_t r = 1; r < ranks_.size(); ++r) others.emplace_back([&, r] { RunRank(ranks_[r], pass); });
  RunRank(ranks_[0], pass);
  for (std::thread& t : others) t.join();

  // The logits stay: the CPU backend has them on the host anyway.
  out->argmax.resize(pass.picked.size());
  for (size_t r = 0; r < pass.picked.size(); ++r) out->argmax[r] = Argmax({out->logits.data() + r * vocab, vocab});
  out->mtp_argmax.resize(out->mtp_logits.size() / vocab);
  for (size_t r = 0; r < out->mtp_argmax.size(); ++r) {
    out->mtp_argmax[r] = Argmax({out->mtp_logits.data() + r * vocab, vocab});
  }
  out->sampled.clear();  // no device sampling here (validation rejects SequenceInput::sample)
  return absl::OkStatus();
}

void CpuBackend::RunRank(Rank& r, const Pass& pass) {
  const ModelConfig& cfg = weights_->config;
  const int64_t d = cfg.hidden_size;
  // x: the residual stream, [rows, d], sequences' tokens one after another; every rank has it whole.
  std::vector<float> x(static_cast<size_t>(pass.row_begin.back() * d));
  for (size_t i = 0; i < pass.batch.size(); ++i) {
    for (size_t t = 0; t < pass.batch[i].tokens.size(); ++t) {
      cpu::ReadRow(weights_->embeddings, pass.batch[i].tokens[t], x.data() + (pass.row_begin[i] + t) * d);
    }
  }
  const int trunk_layers = cfg.mtp ? cfg.mtp->trunk_layers : cfg.num_blocks;
  std::vector<float> z;  // the residual stream the MTP heads read
  for (int l = 0; l < cfg.num_blocks; ++l) {
    if (pass.any_heads && l == trunk_layers) z = x;
    RunBlock(r, r.weights.blocks[l], l, pass.batch, pass.row_begin, x);
  }
  if (pass.any_heads && trunk_layers == cfg.num_blocks) z = x;
  Unembed(r, x, pass.picked, pass.out->logits.data());
  if (pass.any_heads) RunMtpHeads(r, pass, z);
}

void CpuBackend::Unembed(Rank& r, const std::vector<float>& x, const std::vector<int64_t>& rows, float* logits) {
  const ModelConfig& cfg = weights_->config;
  const int64_t d = cfg.hidden_size;
  std::vector<float> normed(rows.size() * d);
  for (size_t p = 0; p < rows.size(); ++p) {
    cpu::RmsNorm(x.data() + rows[p] * d, 1, d, weights_->out_norm_w, TensorView{}, cfg.norm_eps,
                 normed.data() + p * d);
  }
  const ShardRange vocab = plan_.vocab(r.index);
  Linear(*r.pool, normed.data(), static_cast<int64_t>(rows.size()), d, r.weights.lm_head, TensorView{},
         logits + vocab.begin, cfg.vocab_size, options_.precision);
  for (size_t p = 0; p < rows.size(); ++p) {
    cpu::SoftCap(std::span<float>(logits + p * cfg.vocab_size + vocab.begin, vocab.count), cfg.output_logit_soft_cap);
  }
}

void CpuBackend::RunMtpHeads(Rank& r, const Pass& pass, const std::vector<float>& z) {
  const ModelConfig& cfg = weights_->config;
  const int64_t d = cfg.hidden_size;
  const int64_t vocab = cfg.vocab_size;
  const int extra = cfg.mtp->num_heads - 1;
  const std::span<const SequenceInput> batch = pass.batch;
  const std::vector<int64_t>& row_begin = pass.row_begin;

  // The heads run only on the rows of sequences that asked for them, gathered densely.
  std::vector<SequenceInput> sub;
  std::vector<int64_t> sub_begin = {0};
  std::vector<int64_t> sub_row_of(row_begin.back(), -1);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].mtp_heads) continue;
    for (int64_t row = row_begin[i]; row < row_begin[i + 1]; ++row) {
      sub_row_of[row] = sub_begin.back() + (row - row_begin[i]);
    }
    sub.push_back(batch[i]);
    sub_begin.push_back(sub_begin.back() + (row_begin[i + 1] - row_begin[i]));
  }
  std::vector<float> z_sub(sub_begin.back() * d);
  for (int64_t row = 0; row < row_begin.back(); ++row) {
    if (sub_row_of[row] >= 0) std::copy_n(z.data() + row * d, d, z_sub.data() + sub_row_of[row] * d);
  }
  std::vector<int64_t> rows;  // picked rows of head-running sequences, in sub coordinates
  std::vector<size_t> rows_at;  // and their index among all picked rows
  for (size_t p = 0; p < pass.picked.size(); ++p) {
    if (batch[pass.picked_seq[p]].mtp_heads) {
      rows.push_back(sub_row_of[pass.picked[p]]);
      rows_at.push_back(p);
    }
  }
  const ShardRange own = plan_.vocab(r.index);
  std::vector<float> logits(rows.size() * vocab);
  for (int head = 1; head <= extra; ++head) {
    std::vector<float> h;
    if (cfg.mtp->head_type == MtpHeadType::kMlstmBlock) {
      h = z_sub;
      RunBlock(r, r.weights.mtp_block_heads[head - 1], cfg.num_blocks + head - 1, sub, sub_begin, h);
    } else {
      h.resize(z_sub.size());
      Linear(*r.pool, z_sub.data(), sub_begin.back(), d, weights_->mtp_linear_heads[head - 1].proj_w, TensorView{},
             h.data(), d, options_.precision);
    }
    Unembed(r, h, rows, logits.data());
    for (size_t q = 0; q < rows.size(); ++q) {
      std::copy_n(logits.data() + q * vocab + own.begin, own.count,
                  pass.out->mtp_logits.data() + (rows_at[q] * extra + head - 1) * vocab + own.begin);
    }
  }
}

absl::Status CpuBackend::Commit(std::span<const CommitInput> commits) {
  const ModelConfig& cfg = weights_->config;
  const int heads = cfg.num_heads;
  const int qk_dim = cfg.qk_dim();
  const int v_dim = cfg.v_dim();
  for (const CommitInput& c : commits) {
    if (c.slot < 0 || c.slot >= num_slots_) {
      return absl::OutOfRangeError("commit: state slot " + std::to_string(c.slot) + " out of range");
    }
    const DeferredSlot& pending = deferred_[c.slot];
    if (c.num_tokens < 0 || c.num_tokens > pending.num_tokens) {
      return absl::FailedPreconditionError(
          "commit: slot " + std::to_string(c.slot) + " has " + std::to_string(pending.num_tokens) +
          " deferred tokens, cannot commit " + std::to_string(c.num_tokens));
    }
  }
  for (const CommitInput& c : commits) {
    DeferredSlot& pending = deferred_[c.slot];
    if (c.num_tokens > 0) {
      float* slot = SlotData(c.slot);
      // One chunk of num_tokens: C_a = e^{F_a+m0-m_a} C0 + sum_s e^{F_a-F_s+ĩ_s-m_a} k_s v_sᵀ.
      const int64_t work = static_cast<int64_t>(pending.layers.size()) * heads;
      pool_.ParallelFor(work, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> h_scratch(static_cast<size_t>(c.num_tokens) * cfg.v_head_dim());
        for (int64_t w = begin; w < end; ++w) {
          const int layer = static_cast<int>(w / heads);
          const int head = static_cast<int>(w % heads);
          const DeferredLayer& in_layer = pending.layers[layer];
          if (in_layer.k.empty()) continue;  // a head layer this forward did not run
          cpu::MlstmHeadInputs in;
          in.q = in_layer.k.data() + head * cfg.qk_head_dim();  // outputs are discarded
          in.k = in_layer.k.data() + head * cfg.qk_head_dim();
          in.v = in_layer.v.data() + head * cfg.v_head_dim();
          in.igate = in_layer.igate.data() + head;
          in.fgate = in_layer.fgate.data() + head;
          in.qk_stride = qk_dim;
          in.v_stride = v_dim;
          in.gate_stride = heads;
          in.num_tokens = c.num_tokens;
          in.dqk = cfg.qk_head_dim();
          in.dv = cfg.v_head_dim();
          in.eps = static_cast<float>(cfg.eps);
          cpu::MlstmHeadChunkwise(in, c.num_tokens, slot + layout_.c_offset(layer, head),
                                  slot + layout_.n_offset(layer, head),
                                  slot + layout_.m_offset(layer, head), h_scratch.data(),
                                  cfg.v_head_dim());
        }
      });
    }
    pending.num_tokens = 0;
  }
  return absl::OkStatus();
}

void CpuBackend::RunBlock(Rank& r, const BlockWeights& w, int layer, std::span<const SequenceInput> batch,
                          const std::vector<int64_t>& row_begin, std::vector<float>& x) {
  const ModelConfig& cfg = weights_->config;
  const int64_t d = cfg.hidden_size;
  const int64_t rows = row_begin.back();
  const int dqk = cfg.qk_head_dim();
  const int dv = cfg.v_head_dim();
  // This rank's heads [first_head, first_head + heads) and FFN slice; widths below are its own.
  const int first_head = static_cast<int>(plan_.heads(r.index).begin);
  const int heads = static_cast<int>(plan_.heads(r.index).count);
  const int qk_dim = heads * dqk;
  const int v_dim = heads * dv;
  const int ffn = static_cast<int>(plan_.ffn(r.index).count);
  const int parts = plan_.reduce_parts_per_rank();
  ThreadPool& pool = *r.pool;

  // mLSTM sub-layer: x += out_proj(sigmoid(o) * MultiHeadNorm(mLSTM(q, k, v, ĩ, f̃))).
  std::vector<float> xn(rows * d);
  cpu::RmsNorm(x.data(), rows, d, w.norm_mlstm_w, w.norm_mlstm_b, cfg.norm_eps, xn.data());
  std::vector<float> q(rows * qk_dim), k(rows * qk_dim), v(rows * v_dim), o(rows * v_dim);
  std::vector<float> ig(rows * heads), fg(rows * heads);
  Linear(pool, xn.data(), rows, d, w.q_w, w.q_b, q.data(), qk_dim, options_.precision);
  Linear(pool, xn.data(), rows, d, w.k_w, w.k_b, k.data(), qk_dim, options_.precision);
  Linear(pool, xn.data(), rows, d, w.v_w, w.v_b, v.data(), v_dim, options_.precision);
  Linear(pool, xn.data(), rows, d, w.ogate_w, w.ogate_b, o.data(), v_dim, options_.precision);
  Linear(pool, xn.data(), rows, d, w.igate_w, w.igate_b, ig.data(), heads, options_.precision);
  Linear(pool, xn.data(), rows, d, w.fgate_w, w.fgate_b, fg.data(), heads, options_.precision);
  cpu::SoftCap(ig, cfg.gate_soft_cap);
  cpu::SoftCap(fg, cfg.gate_soft_cap);

  // Deferred sequences keep their layer inputs for Commit() (this rank's columns of them) and
  // run on a copy of the state.
  auto keep_columns = [&](const std::vector<float>& from, int width, int full_width, int offset, int64_t r0,
                          int64_t r1, std::vector<float>& to) {
    for (int64_t row = r0; row < r1; ++row) {
      std::copy_n(from.data() + row * width, width, to.data() + (row - r0) * full_width + offset);
    }
  };
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].defer_commit) continue;
    DeferredLayer& keep = deferred_[batch[i].slot].layers[layer];
    const int64_t r0 = row_begin[i], r1 = row_begin[i + 1];
    keep_columns(k, qk_dim, cfg.qk_dim(), first_head * dqk, r0, r1, keep.k);
    keep_columns(v, v_dim, cfg.v_dim(), first_head * dv, r0, r1, keep.v);
    keep_columns(ig, heads, cfg.num_heads, first_head, r0, r1, keep.igate);
    keep_columns(fg, heads, cfg.num_heads, first_head, r0, r1, keep.fgate);
  }

  std::vector<float> h(rows * v_dim);
  const int64_t pairs = static_cast<int64_t>(batch.size()) * heads;
  pool.ParallelFor(pairs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t seq = p / heads;
      const int j = static_cast<int>(p % heads);  // the rank's head j is the model's first_head + j
      const int head = first_head + j;
      const int64_t r0 = row_begin[seq];
      cpu::MlstmHeadInputs in;
      in.q = q.data() + r0 * qk_dim + j * dqk;
      in.k = k.data() + r0 * qk_dim + j * dqk;
      in.v = v.data() + r0 * v_dim + j * dv;
      in.igate = ig.data() + r0 * heads + j;
      in.fgate = fg.data() + r0 * heads + j;
      in.qk_stride = qk_dim;
      in.v_stride = v_dim;
      in.gate_stride = heads;
      in.num_tokens = static_cast<int>(row_begin[seq + 1] - r0);
      in.dqk = dqk;
      in.dv = dv;
      in.eps = static_cast<float>(cfg.eps);
      float* slot = SlotData(batch[seq].slot);
      float* c = slot + layout_.c_offset(layer, head);
      std::vector<float> copy;
      if (batch[seq].defer_commit) {
        copy.assign(c, c + layout_.head_floats());
        c = copy.data();
      }
      // C, n and m of one head are contiguous (state_layout.h), so offsets carry over to copies.
      cpu::MlstmHeadChunkwise(in, options_.chunk_size, c, c + (layout_.n_offset(layer, head) - layout_.c_offset(layer, head)),
                              c + (layout_.m_offset(layer, head) - layout_.c_offset(layer, head)),
                              h.data() + r0 * v_dim + j * dv, v_dim);
    }
  });
  cpu::MultiHeadLayerNorm(h.data(), rows, heads, dv, w.mh_norm_w, w.mh_norm_b, cfg.norm_eps);
  for (int64_t i = 0; i < rows * v_dim; ++i) h[i] *= cpu::Sigmoid(o[i]);
  // The reduced products: the rank's partial sums, added over the ranks, then the bias.
  std::vector<float> y(rows * d);
  Linear(pool, h.data(), rows, v_dim, w.out_proj_w, TensorView{}, y.data(), d, options_.precision, parts);
  r.comm->AllReduceSum(y);
  cpu::AddBias(y.data(), rows, d, w.out_proj_b);
  for (int64_t i = 0; i < rows * d; ++i) x[i] += y[i];

  // Feed-forward sub-layer: x += down(silu(up_gate(xn)) * up(xn)).
  cpu::RmsNorm(x.data(), rows, d, w.norm_ffn_w, w.norm_ffn_b, cfg.norm_eps, xn.data());
  std::vector<float> gate(rows * ffn), up(rows * ffn);
  Linear(pool, xn.data(), rows, d, w.up_gate_w, w.up_gate_b, gate.data(), ffn, options_.precision);
  Linear(pool, xn.data(), rows, d, w.up_w, w.up_b, up.data(), ffn, options_.precision);
  for (int64_t i = 0; i < rows * ffn; ++i) gate[i] = cpu::Silu(gate[i]) * up[i];
  Linear(pool, gate.data(), rows, ffn, w.down_w, TensorView{}, y.data(), d, options_.precision, parts);
  r.comm->AllReduceSum(y);
  cpu::AddBias(y.data(), rows, d, w.down_b);
  for (int64_t i = 0; i < rows * d; ++i) x[i] += y[i];
}

}  // namespace xlserve
