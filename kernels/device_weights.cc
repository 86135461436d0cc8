#include "kernels/device_weights.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "engine/util/dtype.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {
namespace {

float ElementAsFloat(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kBF16: return BF16ToFloat(static_cast<const uint16_t*>(t.data)[i]);
    case DType::kF16: return F16ToFloat(static_cast<const uint16_t*>(t.data)[i]);
    default: return static_cast<const float*>(t.data)[i];
  }
}

// The row of the parts stacked in order that row r of an upload holds: r itself, or with
// `group` > 0 (two parts of `half` rows each) groups of `group` rows of each part in turn
// (kSwiGluGroup's layout).
int64_t SourceRow(int64_t r, int64_t half, int group) {
  if (group == 0) return r;
  const int64_t q = r / (2 * group), j = r % (2 * group);
  return (j < group ? 0 : half) + q * group + j % group;
}

}  // namespace

ProjColumns ProjColumns::ForModel(const ModelConfig& c) {
  ProjColumns p;
  p.q = 0;
  p.k = p.q + c.qk_dim();
  p.v = p.k + c.qk_dim();
  p.o = p.v + c.v_dim();
  p.igate = p.o + c.v_dim();
  p.fgate = p.igate + c.num_heads;
  p.width = p.fgate + c.num_heads;
  return p;
}

DeviceWeights::~DeviceWeights() {
  for (void* p : allocations_) cudaFree(p);
}

absl::StatusOr<void*> DeviceWeights::Copy(const void* host, size_t bytes) {
  void* ptr = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr, bytes));
  allocations_.push_back(ptr);
  CUDA_RETURN_IF_ERROR(cudaMemcpy(ptr, host, bytes, cudaMemcpyHostToDevice));
  return ptr;
}

absl::StatusOr<const float*> DeviceWeights::UploadVector(const TensorView& t) {
  if (!t.present()) return nullptr;
  std::vector<float> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = ElementAsFloat(t, i);
  ASSIGN_OR_RETURN(void* p, Copy(v.data(), v.size() * sizeof(float)));
  return static_cast<const float*>(p);
}

absl::StatusOr<const float*> DeviceWeights::UploadStackedBias(
    const std::vector<std::pair<const TensorView*, const TensorView*>>& parts, int interleave) {
  bool any = false;
  std::vector<float> v;
  for (auto [w, b] : parts) {
    const size_t begin = v.size();
    v.resize(begin + w->rows(), 0.0f);
    if (b->present()) {
      any = true;
      for (int64_t i = 0; i < b->numel(); ++i) v[begin + i] = ElementAsFloat(*b, i);
    }
  }
  if (!any) return nullptr;
  std::vector<float> placed(v.size());
  for (size_t r = 0; r < v.size(); ++r) placed[r] = v[SourceRow(int64_t(r), int64_t(v.size() / 2), interleave)];
  ASSIGN_OR_RETURN(void* p, Copy(placed.data(), placed.size() * sizeof(float)));
  return static_cast<const float*>(p);
}

absl::StatusOr<DeviceMatrix> DeviceWeights::UploadMatrix(const std::vector<const TensorView*>& parts, int interleave) {
  DeviceMatrix m;
  bool all_bf16 = true;
  for (const TensorView* t : parts) {
    m.rows += static_cast<int>(t->rows());
    m.cols = static_cast<int>(t->cols());
    all_bf16 = all_bf16 && t->dtype == DType::kBF16;
  }
  m.type = all_bf16 ? WeightType::kBF16 : WeightType::kF32;
  const int64_t count = int64_t(m.rows) * m.cols;
  const size_t elem = all_bf16 ? 2 : 4;
  std::vector<uint8_t> host;
  const void* src = nullptr;
  if (parts.size() == 1 && (all_bf16 || parts[0]->dtype == DType::kF32)) {
    src = parts[0]->data;  // stored as needed: copy straight from the mapping
  } else {
    // Row by row from the parts, in one pass over the host copy.
    host.resize(count * elem);
    const size_t row_bytes = size_t(m.cols) * elem;
    for (int64_t r = 0; r < m.rows; ++r) {
      int64_t row = SourceRow(r, m.rows / 2, interleave);
      size_t part = 0;
      while (row >= parts[part]->rows()) row -= parts[part++]->rows();
      const TensorView& t = *parts[part];
      uint8_t* dst = host.data() + r * row_bytes;
      if (all_bf16) {
        std::memcpy(dst, static_cast<const uint8_t*>(t.data) + row * row_bytes, row_bytes);
      } else {
        float* out = reinterpret_cast<float*>(dst);
        for (int64_t c = 0; c < m.cols; ++c) out[c] = ElementAsFloat(t, row * m.cols + c);
      }
    }
    src = host.data();
  }
  ASSIGN_OR_RETURN(void* p, Copy(src, count * elem));
  m.data = p;
  matrix_bytes += count * elem;
  any_bf16 = any_bf16 || all_bf16;
  return m;
}

absl::StatusOr<DeviceBlock> DeviceWeights::UploadBlock(const BlockWeights& b) {
  DeviceBlock db;
  ASSIGN_OR_RETURN(db.norm_mlstm_w, UploadVector(b.norm_mlstm_w));
  ASSIGN_OR_RETURN(db.norm_mlstm_b, UploadVector(b.norm_mlstm_b));
  ASSIGN_OR_RETURN(db.proj, UploadMatrix({&b.q_w, &b.k_w, &b.v_w, &b.ogate_w, &b.igate_w, &b.fgate_w}));
  ASSIGN_OR_RETURN(db.proj_b, UploadStackedBias({{&b.q_w, &b.q_b},
                                                    {&b.k_w, &b.k_b},
                                                    {&b.v_w, &b.v_b},
                                                    {&b.ogate_w, &b.ogate_b},
                                                    {&b.igate_w, &b.igate_b},
                                                    {&b.fgate_w, &b.fgate_b}}));
  ASSIGN_OR_RETURN(db.mh_norm_w, UploadVector(b.mh_norm_w));
  ASSIGN_OR_RETURN(db.mh_norm_b, UploadVector(b.mh_norm_b));
  ASSIGN_OR_RETURN(db.out_proj, UploadMatrix({&b.out_proj_w}));
  ASSIGN_OR_RETURN(db.out_proj_b, UploadVector(b.out_proj_b));
  ASSIGN_OR_RETURN(db.norm_ffn_w, UploadVector(b.norm_ffn_w));
  ASSIGN_OR_RETURN(db.norm_ffn_b, UploadVector(b.norm_ffn_b));
  db.up_interleaved = b.up_gate_w.rows() == b.up_w.rows() && b.up_w.rows() % kSwiGluGroup == 0;
  const int group = db.up_interleaved ? kSwiGluGroup : 0;
  ASSIGN_OR_RETURN(db.up, UploadMatrix({&b.up_gate_w, &b.up_w}, group));
  ASSIGN_OR_RETURN(db.up_b, UploadStackedBias({{&b.up_gate_w, &b.up_gate_b}, {&b.up_w, &b.up_b}}, group));
  ASSIGN_OR_RETURN(db.down, UploadMatrix({&b.down_w}));
  ASSIGN_OR_RETURN(db.down_b, UploadVector(b.down_b));
  return db;
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::Upload(const ModelWeights& w) {
  std::unique_ptr<DeviceWeights> d(new DeviceWeights());
  ASSIGN_OR_RETURN(d->embeddings, d->UploadMatrix({&w.embeddings}));
  d->matrix_bytes = 0;  // a decode step reads one row of the embedding table per token
  if (w.lm_head.data == w.embeddings.data && w.lm_head.dtype == w.embeddings.dtype) {
    d->lm_head = d->embeddings;
    d->matrix_bytes += int64_t(d->lm_head.rows) * d->lm_head.cols * (d->lm_head.type == WeightType::kBF16 ? 2 : 4);
  } else {
    ASSIGN_OR_RETURN(d->lm_head, d->UploadMatrix({&w.lm_head}));
  }
  ASSIGN_OR_RETURN(d->out_norm_w, d->UploadVector(w.out_norm_w));
  for (const BlockWeights& b : w.blocks) {
    ASSIGN_OR_RETURN(DeviceBlock db, d->UploadBlock(b));
    d->blocks.push_back(db);
  }
  for (const BlockWeights& b : w.mtp_block_heads) {
    ASSIGN_OR_RETURN(DeviceBlock db, d->UploadBlock(b));
    d->head_blocks.push_back(db);
  }
  for (const LinearHeadWeights& h : w.mtp_linear_heads) {
    ASSIGN_OR_RETURN(DeviceMatrix m, d->UploadMatrix({&h.proj_w}));
    d->head_linear.push_back(m);
  }
  return d;
}

}  // namespace xlserve::kernels
