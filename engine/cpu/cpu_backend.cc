#include "engine/cpu/cpu_backend.h"

#include <string>

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
  return std::unique_ptr<CpuBackend>(new CpuBackend(std::move(weights), options));
}

CpuBackend::CpuBackend(std::shared_ptr<const ModelWeights> weights,
                       const CpuBackendOptions& options)
    : weights_(std::move(weights)),
      options_(options),
      layout_(StateLayout::ForModel(weights_->config)),
      pool_(options.num_threads) {}

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
  const int64_t d = cfg.hidden_size;

  // x: the residual stream, [rows, d], sequences' tokens one after another.
  std::vector<int64_t> row_begin(batch.size() + 1, 0);
  for (size_t i = 0; i < batch.size(); ++i) {
    row_begin[i + 1] = row_begin[i] + static_cast<int64_t>(batch[i].tokens.size());
  }
  const int64_t rows = row_begin.back();
  std::vector<float> x(static_cast<size_t>(rows * d));
  for (size_t i = 0; i < batch.size(); ++i) {
    for (size_t t = 0; t < batch[i].tokens.size(); ++t) {
      cpu::ReadRow(weights_->embeddings, batch[i].tokens[t], x.data() + (row_begin[i] + t) * d);
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    DeferredSlot& pending = deferred_[batch[i].slot];
    pending.num_tokens = batch[i].defer_commit ? static_cast<int>(batch[i].tokens.size()) : 0;
    if (batch[i].defer_commit) pending.layers.assign(layout_.num_layers, DeferredLayer{});
  }
  bool any_heads = false;
  for (const SequenceInput& s : batch) any_heads = any_heads || s.mtp_heads;
  const int trunk_layers = cfg.mtp ? cfg.mtp->trunk_layers : cfg.num_blocks;
  std::vector<float> z;  // the residual stream the MTP heads read
  for (int l = 0; l < cfg.num_blocks; ++l) {
    if (any_heads && l == trunk_layers) z = x;
    RunBlock(weights_->blocks[l], l, batch, row_begin, x);
  }
  if (any_heads && trunk_layers == cfg.num_blocks) z = x;

  // Only the rows whose logits were asked for go through out_norm and the unembedding.
  out->vocab_size = cfg.vocab_size;
  out->row_offset.assign(batch.size() + 1, 0);
  std::vector<int64_t> picked;
  std::vector<int> picked_seq;
  for (size_t i = 0; i < batch.size(); ++i) {
    const int64_t first = batch[i].all_logits ? row_begin[i] : row_begin[i + 1] - 1;
    for (int64_t r = first; r < row_begin[i + 1]; ++r) {
      picked.push_back(r);
      picked_seq.push_back(static_cast<int>(i));
    }
    out->row_offset[i + 1] = static_cast<int>(picked.size());
  }
  out->logits.resize(picked.size() * static_cast<size_t>(cfg.vocab_size));
  Unembed(x, picked, out->logits.data());
  out->num_mtp_heads = 0;
  out->mtp_logits.clear();
  if (any_heads) RunMtpHeads(batch, row_begin, z, picked, picked_seq, out);
  // The logits stay: the CPU backend has them on the host anyway.
  const size_t vocab = static_cast<size_t>(cfg.vocab_size);
  out->argmax.resize(picked.size());
  for (size_t r = 0; r < picked.size(); ++r) out->argmax[r] = Argmax({out->logits.data() + r * vocab, vocab});
  out->mtp_argmax.resize(out->mtp_logits.size() / vocab);
  for (size_t r = 0; r < out->mtp_argmax.size(); ++r) {
    out->mtp_argmax[r] = Argmax({out->mtp_logits.data() + r * vocab, vocab});
  }
  out->sampled.clear();  // no device sampling here (validation rejects SequenceInput::sample)
  return absl::OkStatus();
}

void CpuBackend::Unembed(const std::vector<float>& x, const std::vector<int64_t>& rows,
                         float* logits) {
  const ModelConfig& cfg = weights_->config;
  const int64_t d = cfg.hidden_size;
  std::vector<float> normed(rows.size() * d);
  for (size_t p = 0; p < rows.size(); ++p) {
    cpu::RmsNorm(x.data() + rows[p] * d, 1, d, weights_->out_norm_w, TensorView{}, cfg.norm_eps,
                 normed.data() + p * d);
  }
  Linear(pool_, normed.data(), static_cast<int64_t>(rows.size()), d, weights_->lm_head,
         TensorView{}, logits, cfg.vocab_size, options_.precision);
  cpu::SoftCap(std::span<float>(logits, rows.size() * cfg.vocab_size), cfg.output_logit_soft_cap);
}

void CpuBackend::RunMtpHeads(std::span<const SequenceInput> batch,
                             const std::vector<int64_t>& row_begin, const std::vector<float>& z,
                             const std::vector<int64_t>& picked, const std::vector<int>& picked_seq,
                             ForwardOutput* out) {
  const ModelConfig& cfg = weights_->config;
  const int64_t d = cfg.hidden_size;
  const int64_t vocab = cfg.vocab_size;
  const int extra = cfg.mtp->num_heads - 1;
  out->num_mtp_heads = extra;
  out->mtp_logits.assign(picked.size() * extra * vocab, 0.0f);

  // The heads run only on the rows of sequences that asked for them, gathered densely.
  std::vector<SequenceInput> sub;
  std::vector<int64_t> sub_begin = {0};
  std::vector<int64_t> sub_row_of(row_begin.back(), -1);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].mtp_heads) continue;
    for (int64_t r = row_begin[i]; r < row_begin[i + 1]; ++r) sub_row_of[r] = sub_begin.back() + (r - row_begin[i]);
    sub.push_back(batch[i]);
    sub_begin.push_back(sub_begin.back() + (row_begin[i + 1] - row_begin[i]));
  }
  std::vector<float> z_sub(sub_begin.back() * d);
  for (int64_t r = 0; r < row_begin.back(); ++r) {
    if (sub_row_of[r] >= 0) std::copy_n(z.data() + r * d, d, z_sub.data() + sub_row_of[r] * d);
  }
  std::vector<int64_t> rows;  // picked rows of head-running sequences, in sub coordinates
  std::vector<size_t> rows_at;  // and their index among all picked rows
  for (size_t p = 0; p < picked.size(); ++p) {
    if (batch[picked_seq[p]].mtp_heads) {
      rows.push_back(sub_row_of[picked[p]]);
      rows_at.push_back(p);
    }
  }
  std::vector<float> logits(rows.size() * vocab);
  for (int head = 1; head <= extra; ++head) {
    std::vector<float> h;
    if (cfg.mtp->head_type == MtpHeadType::kMlstmBlock) {
      h = z_sub;
      RunBlock(weights_->mtp_block_heads[head - 1], cfg.num_blocks + head - 1, sub, sub_begin, h);
    } else {
      h.resize(z_sub.size());
      Linear(pool_, z_sub.data(), sub_begin.back(), d, weights_->mtp_linear_heads[head - 1].proj_w,
             TensorView{}, h.data(), d, options_.precision);
    }
    Unembed(h, rows, logits.data());
    for (size_t q = 0; q < rows.size(); ++q) {
      std::copy_n(logits.data() + q * vocab, vocab,
                  out->mtp_logits.data() + (rows_at[q] * extra + head - 1) * vocab);
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

void CpuBackend::RunBlock(const BlockWeights& w, int layer, std::span<const SequenceInput> batch,
                          const std::vector<int64_t>& row_begin, std::vector<float>& x) {
  const ModelConfig& cfg = weights_->config;
  const int64_t d = cfg.hidden_size;
  const int64_t rows = row_begin.back();
  const int heads = cfg.num_heads;
  const int qk_dim = cfg.qk_dim();
  const int v_dim = cfg.v_dim();
  const int dqk = cfg.qk_head_dim();
  const int dv = cfg.v_head_dim();

  // mLSTM sub-layer: x += out_proj(sigmoid(o) * MultiHeadNorm(mLSTM(q, k, v, ĩ, f̃))).
  std::vector<float> xn(rows * d);
  cpu::RmsNorm(x.data(), rows, d, w.norm_mlstm_w, w.norm_mlstm_b, cfg.norm_eps, xn.data());
  std::vector<float> q(rows * qk_dim), k(rows * qk_dim), v(rows * v_dim), o(rows * v_dim);
  std::vector<float> ig(rows * heads), fg(rows * heads);
  Linear(pool_, xn.data(), rows, d, w.q_w, w.q_b, q.data(), qk_dim, options_.precision);
  Linear(pool_, xn.data(), rows, d, w.k_w, w.k_b, k.data(), qk_dim, options_.precision);
  Linear(pool_, xn.data(), rows, d, w.v_w, w.v_b, v.data(), v_dim, options_.precision);
  Linear(pool_, xn.data(), rows, d, w.ogate_w, w.ogate_b, o.data(), v_dim, options_.precision);
  Linear(pool_, xn.data(), rows, d, w.igate_w, w.igate_b, ig.data(), heads, options_.precision);
  Linear(pool_, xn.data(), rows, d, w.fgate_w, w.fgate_b, fg.data(), heads, options_.precision);
  cpu::SoftCap(ig, cfg.gate_soft_cap);
  cpu::SoftCap(fg, cfg.gate_soft_cap);

  // Deferred sequences keep their layer inputs for Commit() and run on a copy of the state.
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].defer_commit) continue;
    DeferredLayer& keep = deferred_[batch[i].slot].layers[layer];
    const int64_t r0 = row_begin[i], r1 = row_begin[i + 1];
    keep.k.assign(k.begin() + r0 * qk_dim, k.begin() + r1 * qk_dim);
    keep.v.assign(v.begin() + r0 * v_dim, v.begin() + r1 * v_dim);
    keep.igate.assign(ig.begin() + r0 * heads, ig.begin() + r1 * heads);
    keep.fgate.assign(fg.begin() + r0 * heads, fg.begin() + r1 * heads);
  }

  std::vector<float> h(rows * v_dim);
  const int64_t pairs = static_cast<int64_t>(batch.size()) * heads;
  pool_.ParallelFor(pairs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t seq = p / heads;
      const int head = static_cast<int>(p % heads);
      const int64_t r0 = row_begin[seq];
      cpu::MlstmHeadInputs in;
      in.q = q.data() + r0 * qk_dim + head * dqk;
      in.k = k.data() + r0 * qk_dim + head * dqk;
      in.v = v.data() + r0 * v_dim + head * dv;
      in.igate = ig.data() + r0 * heads + head;
      in.fgate = fg.data() + r0 * heads + head;
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
                              h.data() + r0 * v_dim + head * dv, v_dim);
    }
  });
  cpu::MultiHeadLayerNorm(h.data(), rows, heads, dv, w.mh_norm_w, w.mh_norm_b, cfg.norm_eps);
  for (int64_t i = 0; i < rows * v_dim; ++i) h[i] *= cpu::Sigmoid(o[i]);
  std::vector<float> y(rows * d);
  Linear(pool_, h.data(), rows, v_dim, w.out_proj_w, w.out_proj_b, y.data(), d, options_.precision);
  for (int64_t i = 0; i < rows * d; ++i) x[i] += y[i];

  // Feed-forward sub-layer: x += down(silu(up_gate(xn)) * up(xn)).
  cpu::RmsNorm(x.data(), rows, d, w.norm_ffn_w, w.norm_ffn_b, cfg.norm_eps, xn.data());
  const int ffn = cfg.ffn_dim();
  std::vector<float> gate(rows * ffn), up(rows * ffn);
  Linear(pool_, xn.data(), rows, d, w.up_gate_w, w.up_gate_b, gate.data(), ffn, options_.precision);
  Linear(pool_, xn.data(), rows, d, w.up_w, w.up_b, up.data(), ffn, options_.precision);
  for (int64_t i = 0; i < rows * ffn; ++i) gate[i] = cpu::Silu(gate[i]) * up[i];
  Linear(pool_, gate.data(), rows, ffn, w.down_w, w.down_b, y.data(), d, options_.precision);
  for (int64_t i = 0; i < rows * d; ++i) x[i] += y[i];
}

}  // namespace xlserve
