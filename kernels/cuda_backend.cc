// CudaBackend: runs the forward pass of engine/cpu/cpu_backend.cc on the GPU with the kernels
// of this directory. Activations and state maths are fp32; weights stay in their stored type.
// Matrix products with few rows (decode) go through GemvSmallRows in fp32; larger ones
// (prefill) through cuBLAS: SGEMM for fp32 weights (no TF32); for bf16 weights, bf16 tensor
// cores with fp32 accumulation over the activations split into two bf16 parts.
#include "kernels/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <map>
#include <string>
#include <vector>

#include "engine/backend_validation.h"
#include "engine/state_layout.h"
#include "engine/util/dtype.h"
#include "engine/util/status_macros.h"
#include "kernels/cuda_check.h"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

struct DeviceTensor {
  void* data = nullptr;
  WeightType type = WeightType::kF32;
  int64_t rows = 0, cols = 0;
  bool present() const { return data != nullptr; }
};

struct DeviceBlock {
  DeviceTensor norm_mlstm_w, norm_mlstm_b, q_w, q_b, k_w, k_b, v_w, v_b, ogate_w, ogate_b, igate_w, igate_b,
      fgate_w, fgate_b, mh_norm_w, mh_norm_b, out_proj_w, out_proj_b, norm_ffn_w, norm_ffn_b, up_gate_w,
      up_gate_b, up_w, up_b, down_w, down_b;
};

// Grows on demand and is reused across calls, so steady-state steps allocate nothing.
class Scratch {
 public:
  ~Scratch() {
    for (auto& [name, buf] : buffers_) cudaFree(buf.ptr);
  }
  absl::StatusOr<void*> Get(const std::string& name, size_t bytes) {
    Buffer& b = buffers_[name];
    if (b.bytes < bytes) {
      cudaFree(b.ptr);
      b.ptr = nullptr;
      b.bytes = 0;
      CUDA_RETURN_IF_ERROR(cudaMalloc(&b.ptr, bytes));
      b.bytes = bytes;
    }
    return b.ptr;
  }

 private:
  struct Buffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  std::map<std::string, Buffer> buffers_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const ModelWeights> weights, int device)
      : weights_(std::move(weights)), device_(device), layout_(StateLayout::ForModel(weights_->config)) {}

  ~CudaBackend() override {
    for (void* p : allocations_) cudaFree(p);
    cudaFree(states_);
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  absl::Status Init() {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream_));
    CUBLAS_RETURN_IF_ERROR(cublasCreate(&cublas_));
    CUBLAS_RETURN_IF_ERROR(cublasSetStream(cublas_, stream_));
    CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    const ModelWeights& w = *weights_;
    ASSIGN_OR_RETURN(embeddings_, Upload(w.embeddings));
    ASSIGN_OR_RETURN(out_norm_w_, Upload(w.out_norm_w));
    ASSIGN_OR_RETURN(lm_head_, Upload(w.lm_head));
    for (const BlockWeights& b : w.blocks) {
      DeviceBlock d;
      const std::pair<DeviceTensor*, const TensorView*> pairs[] = {
          {&d.norm_mlstm_w, &b.norm_mlstm_w}, {&d.norm_mlstm_b, &b.norm_mlstm_b}, {&d.q_w, &b.q_w},
          {&d.q_b, &b.q_b}, {&d.k_w, &b.k_w}, {&d.k_b, &b.k_b}, {&d.v_w, &b.v_w}, {&d.v_b, &b.v_b},
          {&d.ogate_w, &b.ogate_w}, {&d.ogate_b, &b.ogate_b}, {&d.igate_w, &b.igate_w}, {&d.igate_b, &b.igate_b},
          {&d.fgate_w, &b.fgate_w}, {&d.fgate_b, &b.fgate_b}, {&d.mh_norm_w, &b.mh_norm_w},
          {&d.mh_norm_b, &b.mh_norm_b}, {&d.out_proj_w, &b.out_proj_w}, {&d.out_proj_b, &b.out_proj_b},
          {&d.norm_ffn_w, &b.norm_ffn_w}, {&d.norm_ffn_b, &b.norm_ffn_b}, {&d.up_gate_w, &b.up_gate_w},
          {&d.up_gate_b, &b.up_gate_b}, {&d.up_w, &b.up_w}, {&d.up_b, &b.up_b}, {&d.down_w, &b.down_w},
          {&d.down_b, &b.down_b}};
      for (auto [dst, src] : pairs) {
        ASSIGN_OR_RETURN(*dst, Upload(*src));
      }
      blocks_.push_back(d);
    }
    return absl::OkStatus();
  }

  std::string_view name() const override { return "cuda"; }
  const StateLayout& state_layout() const override { return layout_; }
  int num_slots() const override { return num_slots_; }

  absl::Status AllocateSlots(int num_slots) override {
    if (num_slots < 1) return absl::InvalidArgumentError("need at least one state slot");
    cudaFree(states_);
    states_ = nullptr;
    const size_t bytes = size_t(num_slots) * layout_.slot_floats() * sizeof(float);
    if (cudaMalloc(reinterpret_cast<void**>(&states_), bytes) != cudaSuccess) {
      cudaGetLastError();
      num_slots_ = 0;
      return absl::ResourceExhaustedError("cannot allocate " + std::to_string(num_slots) + " state slots (" +
                                          std::to_string(bytes / 1e6) + " MB) on the GPU");
    }
    CUDA_RETURN_IF_ERROR(cudaMemset(states_, 0, bytes));
    num_slots_ = num_slots;
    return absl::OkStatus();
  }

  absl::Status ResetSlot(int slot) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(SlotPtr(slot), 0, layout_.slot_floats() * sizeof(float), stream_));
    return absl::OkStatus();
  }

  absl::Status ReadSlot(int slot, std::span<float> out) const override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(out.size())));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out.data(), SlotPtr(slot), out.size() * sizeof(float),
                                         cudaMemcpyDeviceToHost, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  absl::Status WriteSlot(int slot, std::span<const float> in) override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(in.size())));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(SlotPtr(slot), in.data(), in.size() * sizeof(float),
                                         cudaMemcpyHostToDevice, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override {
    const ModelConfig& cfg = weights_->config;
    RETURN_IF_ERROR(ValidateForwardBatch(batch, num_slots_, cfg.vocab_size, cfg.mtp.has_value(), false));
    const int d = cfg.hidden_size;
    std::vector<int32_t> tokens, row_begin = {0}, slots, picked;
    for (const SequenceInput& s : batch) {
      tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
      row_begin.push_back(static_cast<int32_t>(tokens.size()));
      slots.push_back(s.slot);
    }
    out->vocab_size = cfg.vocab_size;
    out->row_offset.assign(batch.size() + 1, 0);
    out->num_mtp_heads = 0;
    out->mtp_logits.clear();
    for (size_t i = 0; i < batch.size(); ++i) {
      const int first = batch[i].all_logits ? row_begin[i] : row_begin[i + 1] - 1;
      for (int r = first; r < row_begin[i + 1]; ++r) picked.push_back(r);
      out->row_offset[i + 1] = static_cast<int>(picked.size());
    }
    const int rows = static_cast<int>(tokens.size());
    ASSIGN_OR_RETURN(int32_t* d_ints, Ints("ints", tokens.size() + row_begin.size() + slots.size() + picked.size()));
    std::vector<int32_t> packed = tokens;
    packed.insert(packed.end(), row_begin.begin(), row_begin.end());
    packed.insert(packed.end(), slots.begin(), slots.end());
    packed.insert(packed.end(), picked.begin(), picked.end());
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_ints, packed.data(), packed.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
    const int32_t* d_tokens = d_ints;
    const int32_t* d_row_begin = d_tokens + tokens.size();
    const int32_t* d_slots = d_row_begin + row_begin.size();
    const int32_t* d_picked = d_slots + slots.size();

    ASSIGN_OR_RETURN(float* x, Floats("x", size_t(rows) * d));
    CUDA_RETURN_IF_ERROR(EmbeddingGather(embeddings_.data, embeddings_.type, d_tokens, rows, d, x, stream_));
    for (int l = 0; l < cfg.num_blocks; ++l) {
      RETURN_IF_ERROR(RunBlock(blocks_[l], l, rows, static_cast<int>(batch.size()), d_row_begin, d_slots, x));
    }
    const int n_picked = static_cast<int>(picked.size());
    ASSIGN_OR_RETURN(float* sel, Floats("sel", size_t(n_picked) * d));
    ASSIGN_OR_RETURN(float* normed, Floats("normed", size_t(n_picked) * d));
    ASSIGN_OR_RETURN(float* logits, Floats("logits", size_t(n_picked) * cfg.vocab_size));
    CUDA_RETURN_IF_ERROR(GatherRows(x, d_picked, n_picked, d, sel, stream_));
    CUDA_RETURN_IF_ERROR(RmsNorm(sel, out_norm_w_.data, nullptr, out_norm_w_.type, n_picked, d,
                                 static_cast<float>(cfg.norm_eps), normed, stream_));
    RETURN_IF_ERROR(Linear(normed, n_picked, lm_head_, DeviceTensor{}, logits));
    if (cfg.output_logit_soft_cap) {
      CUDA_RETURN_IF_ERROR(SoftCap(logits, int64_t(n_picked) * cfg.vocab_size,
                                   static_cast<float>(*cfg.output_logit_soft_cap), stream_));
    }
    out->logits.resize(size_t(n_picked) * cfg.vocab_size);
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out->logits.data(), logits, out->logits.size() * sizeof(float),
                                         cudaMemcpyDeviceToHost, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

 private:
  absl::Status RunBlock(const DeviceBlock& w, int layer, int rows, int num_seqs, const int32_t* d_row_begin,
                        const int32_t* d_slots, float* x) {
    const ModelConfig& cfg = weights_->config;
    const int d = cfg.hidden_size, heads = cfg.num_heads, qk = cfg.qk_dim(), v = cfg.v_dim(), ffn = cfg.ffn_dim();
    const float norm_eps = static_cast<float>(cfg.norm_eps);
    ASSIGN_OR_RETURN(float* xn, Floats("xn", size_t(rows) * d));
    ASSIGN_OR_RETURN(float* q, Floats("q", size_t(rows) * qk));
    ASSIGN_OR_RETURN(float* k, Floats("k", size_t(rows) * qk));
    ASSIGN_OR_RETURN(float* vv, Floats("v", size_t(rows) * v));
    ASSIGN_OR_RETURN(float* o, Floats("o", size_t(rows) * v));
    ASSIGN_OR_RETURN(float* h, Floats("h", size_t(rows) * v));
    ASSIGN_OR_RETURN(float* ig, Floats("ig", size_t(rows) * heads));
    ASSIGN_OR_RETURN(float* fg, Floats("fg", size_t(rows) * heads));
    ASSIGN_OR_RETURN(float* y, Floats("y", size_t(rows) * d));
    ASSIGN_OR_RETURN(float* gate, Floats("gate", size_t(rows) * ffn));
    ASSIGN_OR_RETURN(float* up, Floats("up", size_t(rows) * ffn));

    // mLSTM sub-layer: x += out_proj(sigmoid(o) * MultiHeadNorm(mLSTM(q, k, v, ĩ, f̃))).
    CUDA_RETURN_IF_ERROR(RmsNorm(x, w.norm_mlstm_w.data, w.norm_mlstm_b.data, w.norm_mlstm_w.type, rows, d, norm_eps,
                                 xn, stream_));
    RETURN_IF_ERROR(Linear(xn, rows, w.q_w, w.q_b, q));
    RETURN_IF_ERROR(Linear(xn, rows, w.k_w, w.k_b, k));
    RETURN_IF_ERROR(Linear(xn, rows, w.v_w, w.v_b, vv));
    RETURN_IF_ERROR(Linear(xn, rows, w.ogate_w, w.ogate_b, o));
    RETURN_IF_ERROR(Linear(xn, rows, w.igate_w, w.igate_b, ig));
    RETURN_IF_ERROR(Linear(xn, rows, w.fgate_w, w.fgate_b, fg));
    if (cfg.gate_soft_cap) {
      CUDA_RETURN_IF_ERROR(SoftCap(ig, int64_t(rows) * heads, static_cast<float>(*cfg.gate_soft_cap), stream_));
      CUDA_RETURN_IF_ERROR(SoftCap(fg, int64_t(rows) * heads, static_cast<float>(*cfg.gate_soft_cap), stream_));
    }
    MlstmParams p;
    p.q = q;
    p.k = k;
    p.v = vv;
    p.igate = ig;
    p.fgate = fg;
    p.h = h;
    p.states = states_;
    p.seq_row_begin = d_row_begin;
    p.seq_slot = d_slots;
    p.num_seqs = num_seqs;
    p.heads = heads;
    p.dqk = cfg.qk_head_dim();
    p.dv = cfg.v_head_dim();
    p.slot_floats = layout_.slot_floats();
    p.layer_offset = layout_.c_offset(layer, 0);
    p.eps = static_cast<float>(cfg.eps);
    CUDA_RETURN_IF_ERROR(MlstmRecurrent(p, stream_));
    CUDA_RETURN_IF_ERROR(HeadNormGate(h, o, w.mh_norm_w.data, w.mh_norm_b.data, w.mh_norm_w.type, rows, heads,
                                      cfg.v_head_dim(), norm_eps, stream_));
    RETURN_IF_ERROR(Linear(h, rows, w.out_proj_w, w.out_proj_b, y));
    CUDA_RETURN_IF_ERROR(AddInPlace(x, y, int64_t(rows) * d, stream_));

    // Feed-forward sub-layer: x += down(silu(up_gate(xn)) * up(xn)).
    CUDA_RETURN_IF_ERROR(
        RmsNorm(x, w.norm_ffn_w.data, w.norm_ffn_b.data, w.norm_ffn_w.type, rows, d, norm_eps, xn, stream_));
    RETURN_IF_ERROR(Linear(xn, rows, w.up_gate_w, w.up_gate_b, gate));
    RETURN_IF_ERROR(Linear(xn, rows, w.up_w, w.up_b, up));
    CUDA_RETURN_IF_ERROR(SwiGlu(gate, up, int64_t(rows) * ffn, stream_));
    RETURN_IF_ERROR(Linear(gate, rows, w.down_w, w.down_b, y));
    CUDA_RETURN_IF_ERROR(AddInPlace(x, y, int64_t(rows) * d, stream_));
    return absl::OkStatus();
  }

  // y[rows, n] = x[rows, k] w[n, k]ᵀ (+ b).
  absl::Status Linear(const float* x, int rows, const DeviceTensor& w, const DeviceTensor& b, float* y) {
    const int n = static_cast<int>(w.rows), k = static_cast<int>(w.cols);
    if (rows <= kGemvMaxRows) {
      CUDA_RETURN_IF_ERROR(GemvSmallRows(x, w.data, b.data, w.type, rows, n, k, y, stream_));
      return absl::OkStatus();
    }
    const float alpha = 1.0f, beta = 0.0f;
    if (w.type == WeightType::kF32) {
      CUBLAS_RETURN_IF_ERROR(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha,
                                         static_cast<const float*>(w.data), k, x, k, &beta, y, n));
    } else {
      // Two bf16 GEMMs over the hi and lo parts of x keep the products at ~fp32 accuracy
      // (bf16 weights are exact in bf16; only the activations needed the extra bits).
      ASSIGN_OR_RETURN(void* hi, scratch_.Get("x_hi", size_t(rows) * k * 2));
      ASSIGN_OR_RETURN(void* lo, scratch_.Get("x_lo", size_t(rows) * k * 2));
      CUDA_RETURN_IF_ERROR(SplitFloatToBf16(x, hi, lo, int64_t(rows) * k, stream_));
      const float one = 1.0f;
      CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha, w.data, CUDA_R_16BF,
                                          k, hi, CUDA_R_16BF, k, &beta, y, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
      CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha, w.data, CUDA_R_16BF,
                                          k, lo, CUDA_R_16BF, k, &one, y, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
    }
    if (b.present()) CUDA_RETURN_IF_ERROR(AddBias(y, b.data, b.type, rows, n, stream_));
    return absl::OkStatus();
  }

  absl::StatusOr<DeviceTensor> Upload(const TensorView& t) {
    DeviceTensor d;
    if (!t.present()) return d;
    d.rows = t.rows();
    d.cols = t.cols();
    const int64_t count = t.numel();
    std::vector<float> widened;
    const void* src = t.data;
    size_t bytes = count * 4;
    if (t.dtype == DType::kBF16) {
      d.type = WeightType::kBF16;
      bytes = count * 2;
    } else if (t.dtype == DType::kF16) {
      widened.resize(count);
      const auto* h = static_cast<const uint16_t*>(t.data);
      for (int64_t i = 0; i < count; ++i) widened[i] = F16ToFloat(h[i]);
      src = widened.data();
    }
    void* ptr = nullptr;
    CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr, bytes));
    allocations_.push_back(ptr);
    CUDA_RETURN_IF_ERROR(cudaMemcpy(ptr, src, bytes, cudaMemcpyHostToDevice));
    d.data = ptr;
    return d;
  }

  absl::StatusOr<float*> Floats(const std::string& name, size_t count) {
    ASSIGN_OR_RETURN(void* p, scratch_.Get(name, count * sizeof(float)));
    return static_cast<float*>(p);
  }
  absl::StatusOr<int32_t*> Ints(const std::string& name, size_t count) {
    ASSIGN_OR_RETURN(void* p, scratch_.Get(name, count * sizeof(int32_t)));
    return static_cast<int32_t*>(p);
  }

  absl::Status CheckSlot(int slot, int64_t buffer_floats) const {
    if (slot < 0 || slot >= num_slots_) {
      return absl::OutOfRangeError("state slot " + std::to_string(slot) + " out of range (" +
                                   std::to_string(num_slots_) + " slots)");
    }
    if (buffer_floats >= 0 && buffer_floats != layout_.slot_floats()) {
      return absl::InvalidArgumentError("buffer has " + std::to_string(buffer_floats) + " floats, a slot has " +
                                        std::to_string(layout_.slot_floats()));
    }
    return absl::OkStatus();
  }
  float* SlotPtr(int slot) const { return states_ + int64_t(slot) * layout_.slot_floats(); }

  std::shared_ptr<const ModelWeights> weights_;
  int device_;
  StateLayout layout_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::vector<void*> allocations_;
  DeviceTensor embeddings_, out_norm_w_, lm_head_;
  std::vector<DeviceBlock> blocks_;
  float* states_ = nullptr;
  int num_slots_ = 0;
  Scratch scratch_;
};

}  // namespace

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

absl::StatusOr<double> MeasureCopyBandwidth(int64_t bytes) {
  void* a = nullptr;
  void* b = nullptr;
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&a, bytes));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&b, bytes));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  constexpr int kIters = 10;
  CUDA_RETURN_IF_ERROR(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(start));
  for (int i = 0; i < kIters; ++i) CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(stop));
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * double(bytes) * kIters / (ms / 1e3);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options) {
  const int count = CudaDeviceCount();
  if (count == 0) return absl::UnavailableError("no CUDA device is available on this machine (use --device cpu)");
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError("CUDA device " + std::to_string(options.device) + " does not exist (" +
                                      std::to_string(count) + " present)");
  }
  auto backend = std::make_unique<CudaBackend>(std::move(weights), options.device);
  RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace xlserve::kernels
