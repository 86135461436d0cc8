// CudaBackend: the forward pass of engine/cpu/cpu_backend.cc on the GPU with the kernels of
// this directory. Activations and state maths are fp32; the state is stored in fp32 or bf16.
// Matrix products: bf16 weights through one cuBLAS bf16 tensor-core GEMM over the split pair of
// the activations (launchers.h; the weights are read once, the products keep ~fp32
// accuracy); fp32 weights through the small-row GEMV (decode) or SGEMM without TF32.
// Per block: RMSNorm -> stacked q/k/v/o/ĩ/f̃ GEMM -> mLSTM (step kernel when every sequence
// has one token, else the recurrent kernel; gate soft cap inside) -> head norm * sigmoid(o) ->
// out_proj GEMM added to the residual -> RMSNorm -> stacked up_gate/up GEMM -> SwiGLU -> down
// GEMM added to the residual.
#include "kernels/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend_validation.h"
#include "engine/state_layout.h"
#include "engine/util/status_macros.h"
#include "kernels/cuda_check.h"
#include "kernels/device_weights.h"
#include "kernels/launchers.h"
#include "kernels/state_pool.h"

namespace xlserve::kernels {
namespace {

// Device buffers that grow on demand and are reused across calls, so steady-state steps
// allocate nothing.
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

// Logits of at least this many bytes reach the host through pinned memory and a parallel
// host copy: a pageable device-to-host copy ran at ~10 GB/s, 2.5 ms of a 20 ms step at batch
// 128 (25.7 MB of logits).
constexpr size_t kPinnedCopyMinBytes = size_t{4} << 20;
constexpr int kHostCopyThreads = 8;

// Copies device memory to pageable host memory; owns its pinned staging buffer.
class HostCopier {
 public:
  ~HostCopier() {
    if (pinned_) cudaFreeHost(pinned_);
  }
  // Synchronises `stream`.
  absl::Status Copy(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
    if (bytes < kPinnedCopyMinBytes) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
      return absl::OkStatus();
    }
    if (bytes > pinned_bytes_) {
      if (pinned_) cudaFreeHost(pinned_);
      pinned_ = nullptr;
      pinned_bytes_ = 0;
      CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned_, bytes));
      pinned_bytes_ = bytes;
    }
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pinned_, src, bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    std::vector<std::thread> threads;
    const size_t part = (bytes + kHostCopyThreads - 1) / kHostCopyThreads;
    for (size_t at = 0; at < bytes; at += part) {
      threads.emplace_back([=, this] {
        std::memcpy(static_cast<char*>(dst) + at, static_cast<const char*>(pinned_) + at, std::min(part, bytes - at));
      });
    }
    for (std::thread& t : threads) t.join();
    return absl::OkStatus();
  }

 private:
  void* pinned_ = nullptr;
  size_t pinned_bytes_ = 0;
};

// Events between the stages of a forward pass, turned into per-stage milliseconds.
class StageProfiler {
 public:
  ~StageProfiler() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  bool on = false;
  absl::Status Mark(const char* stage, cudaStream_t stream) {
    if (!on) return absl::OkStatus();
    if (used_ == events_.size()) {
      cudaEvent_t e;
      CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
      events_.push_back(e);
    }
    CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[used_], stream));
    names_.resize(used_ + 1);
    names_[used_++] = stage;
    return absl::OkStatus();
  }
  // After the stream has finished the pass: adds each stage's time to the totals.
  absl::Status Collect() {
    for (size_t i = 1; i < used_; ++i) {
      float ms = 0;
      CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events_[i - 1], events_[i]));
      totals_[names_[i]] += ms;
    }
    used_ = 0;
    return absl::OkStatus();
  }
  void Add(const std::string& stage, double ms) { totals_[stage] += ms; }
  std::vector<std::pair<std::string, double>> Take() {
    std::vector<std::pair<std::string, double>> out(totals_.begin(), totals_.end());
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    totals_.clear();
    return out;
  }

 private:
  std::vector<cudaEvent_t> events_;
  std::vector<std::string> names_;
  size_t used_ = 0;
  std::map<std::string, double> totals_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const ModelWeights> weights, int device, StateType state_type)
      : weights_(std::move(weights)),
        device_(device),
        layout_(StateLayout::ForModel(weights_->config)),
        cols_(ProjColumns::ForModel(weights_->config)),
        states_(layout_, state_type) {}

  ~CudaBackend() override {
    dev_.reset();
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  absl::Status Init() {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_RETURN_IF_ERROR(cublasCreate(&cublas_));
    CUBLAS_RETURN_IF_ERROR(cublasSetStream(cublas_, stream_));
    CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));  // no TF32 for SGEMM
    ASSIGN_OR_RETURN(dev_, DeviceWeights::Upload(*weights_));
    return absl::OkStatus();
  }

  std::string_view name() const override { return "cuda"; }
  const StateLayout& state_layout() const override { return layout_; }
  int num_slots() const override { return states_.num_slots(); }

  absl::Status AllocateSlots(int num_slots) override { return states_.Allocate(num_slots); }

  absl::Status ResetSlot(int slot) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    return states_.Reset(slot, stream_);
  }

  absl::Status ReadSlot(int slot, std::span<float> out) const override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(out.size())));
    return states_.Read(slot, out, stream_);
  }

  absl::Status WriteSlot(int slot, std::span<const float> in) override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(in.size())));
    return states_.Write(slot, in, stream_);
  }

  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override {
    const ModelConfig& cfg = weights_->config;
    RETURN_IF_ERROR(ValidateForwardBatch(batch, states_.num_slots(), cfg.vocab_size, cfg.mtp.has_value(), false));
    RETURN_IF_ERROR(profiler_.Mark("start", stream_));
    const int d = cfg.hidden_size;
    // One upload of every index array: tokens, sequence row ranges, slots, rows to unembed.
    std::vector<int32_t> packed, row_begin = {0}, slots, picked;
    bool one_token_each = true;
    for (const SequenceInput& s : batch) {
      packed.insert(packed.end(), s.tokens.begin(), s.tokens.end());
      row_begin.push_back(static_cast<int32_t>(packed.size()));
      slots.push_back(s.slot);
      one_token_each = one_token_each && s.tokens.size() == 1;
    }
    const int rows = static_cast<int>(packed.size());
    out->vocab_size = cfg.vocab_size;
    out->row_offset.assign(batch.size() + 1, 0);
    out->num_mtp_heads = 0;
    out->mtp_logits.clear();
    for (size_t i = 0; i < batch.size(); ++i) {
      const int first = batch[i].all_logits ? row_begin[i] : row_begin[i + 1] - 1;
      for (int r = first; r < row_begin[i + 1]; ++r) picked.push_back(r);
      out->row_offset[i + 1] = static_cast<int>(picked.size());
    }
    const int n_picked = static_cast<int>(picked.size());
    packed.insert(packed.end(), row_begin.begin(), row_begin.end());
    packed.insert(packed.end(), slots.begin(), slots.end());
    packed.insert(packed.end(), picked.begin(), picked.end());
    ASSIGN_OR_RETURN(int32_t* d_ints, Typed<int32_t>("ints", packed.size()));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_ints, packed.data(), packed.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
    Indices idx;
    idx.tokens = d_ints;
    idx.row_begin = idx.tokens + rows;
    idx.slots = idx.row_begin + row_begin.size();
    idx.picked = idx.slots + slots.size();
    idx.num_seqs = static_cast<int>(batch.size());
    idx.decode_step =
        one_token_each && MlstmStepSupports(cfg.qk_head_dim(), cfg.v_head_dim(), states_.type());

    ASSIGN_OR_RETURN(float* x, Typed<float>("x", size_t(rows) * d));
    CUDA_RETURN_IF_ERROR(EmbeddingGather(dev_->embeddings.data, dev_->embeddings.type, idx.tokens, rows, d, x, stream_));
    RETURN_IF_ERROR(profiler_.Mark("embedding", stream_));
    for (int l = 0; l < cfg.num_blocks; ++l) RETURN_IF_ERROR(RunBlock(l, rows, idx, x));

    ASSIGN_OR_RETURN(float* sel, Typed<float>("sel", size_t(n_picked) * d));
    ASSIGN_OR_RETURN(float* normed, Typed<float>("normed", size_t(n_picked) * d));
    ASSIGN_OR_RETURN(void* split, Split(n_picked));
    ASSIGN_OR_RETURN(float* logits, Typed<float>("logits", size_t(n_picked) * cfg.vocab_size));
    CUDA_RETURN_IF_ERROR(GatherRows(x, idx.picked, n_picked, d, sel, stream_));
    CUDA_RETURN_IF_ERROR(
        RmsNorm(sel, dev_->out_norm_w, nullptr, n_picked, d, static_cast<float>(cfg.norm_eps), normed, split, stream_));
    RETURN_IF_ERROR(profiler_.Mark("out norm", stream_));
    RETURN_IF_ERROR(Linear(normed, split, n_picked, dev_->lm_head, nullptr, false, logits));
    if (cfg.output_logit_soft_cap) {
      CUDA_RETURN_IF_ERROR(SoftCap(logits, int64_t(n_picked) * cfg.vocab_size,
                                   static_cast<float>(*cfg.output_logit_soft_cap), stream_));
    }
    RETURN_IF_ERROR(profiler_.Mark("lm_head + soft cap", stream_));
    out->logits.resize(size_t(n_picked) * cfg.vocab_size);
    if (profiler_.on) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      RETURN_IF_ERROR(profiler_.Collect());
    }
    const auto copy_start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(copier_.Copy(out->logits.data(), logits, out->logits.size() * sizeof(float), stream_));
    if (profiler_.on) {
      profiler_.Add("logits to host",
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - copy_start).count());
    }
    return absl::OkStatus();
  }

  StageProfiler& profiler() { return profiler_; }

 private:
  struct Indices {
    const int32_t* tokens;
    const int32_t* row_begin;
    const int32_t* slots;
    const int32_t* picked;
    int num_seqs;
    bool decode_step;  // every sequence has one token: the step kernel
  };

  absl::Status RunBlock(int layer, int rows, const Indices& idx, float* x) {
    const ModelConfig& cfg = weights_->config;
    const DeviceBlock& w = dev_->blocks[layer];
    const int d = cfg.hidden_size, heads = cfg.num_heads, v = cfg.v_dim(), ffn = cfg.ffn_dim();
    const float norm_eps = static_cast<float>(cfg.norm_eps);
    ASSIGN_OR_RETURN(float* xn, Typed<float>("xn", size_t(rows) * d));
    ASSIGN_OR_RETURN(void* split, Split(rows));
    ASSIGN_OR_RETURN(float* proj, Typed<float>("proj", size_t(rows) * cols_.width));
    ASSIGN_OR_RETURN(float* h, Typed<float>("h", size_t(rows) * v));
    ASSIGN_OR_RETURN(float* hg, Typed<float>("hg", size_t(rows) * v));
    ASSIGN_OR_RETURN(float* gu, Typed<float>("gu", size_t(rows) * 2 * ffn));
    ASSIGN_OR_RETURN(float* act, Typed<float>("act", size_t(rows) * ffn));

    // mLSTM sub-layer: x += out_proj(sigmoid(o) * MultiHeadNorm(mLSTM(q, k, v, ĩ, f̃))).
    CUDA_RETURN_IF_ERROR(RmsNorm(x, w.norm_mlstm_w, w.norm_mlstm_b, rows, d, norm_eps, xn, split, stream_));
    RETURN_IF_ERROR(profiler_.Mark("rmsnorm", stream_));
    // proj: [rows, q | k | v | o | ĩ | f̃] from xn [rows, d]
    RETURN_IF_ERROR(Linear(xn, split, rows, w.proj, w.proj_b, false, proj));
    RETURN_IF_ERROR(profiler_.Mark("gemm q|k|v|o|gates", stream_));
    MlstmParams p;
    p.q = proj + cols_.q;
    p.k = proj + cols_.k;
    p.v = proj + cols_.v;
    p.igate = proj + cols_.igate;
    p.fgate = proj + cols_.fgate;
    p.proj_stride = cols_.width;
    p.h = h;
    p.state = states_.Ref(layer);
    p.seq_row_begin = idx.row_begin;
    p.seq_slot = idx.slots;
    p.num_seqs = idx.num_seqs;
    p.heads = heads;
    p.dqk = cfg.qk_head_dim();
    p.dv = cfg.v_head_dim();
    p.gate_cap = cfg.gate_soft_cap ? static_cast<float>(*cfg.gate_soft_cap) : 0.0f;
    p.eps = static_cast<float>(cfg.eps);
    CUDA_RETURN_IF_ERROR(idx.decode_step ? MlstmStep(p, stream_) : MlstmRecurrent(p, stream_));
    RETURN_IF_ERROR(profiler_.Mark(idx.decode_step ? "mlstm step" : "mlstm recurrent", stream_));
    // hg: [rows, heads * dv], normed per head and gated by sigmoid(o)
    CUDA_RETURN_IF_ERROR(HeadNormGate(h, proj + cols_.o, cols_.width, w.mh_norm_w, w.mh_norm_b, rows, heads,
                                      cfg.v_head_dim(), norm_eps, hg, split, stream_));
    RETURN_IF_ERROR(profiler_.Mark("head norm * sigmoid(o)", stream_));
    RETURN_IF_ERROR(Linear(hg, split, rows, w.out_proj, w.out_proj_b, true, x));
    RETURN_IF_ERROR(profiler_.Mark("gemm out_proj", stream_));

    // Feed-forward sub-layer: x += down(silu(up_gate(xn)) * up(xn)).
    CUDA_RETURN_IF_ERROR(RmsNorm(x, w.norm_ffn_w, w.norm_ffn_b, rows, d, norm_eps, xn, split, stream_));
    RETURN_IF_ERROR(profiler_.Mark("rmsnorm", stream_));
    // gu: [rows, up_gate | up]
    RETURN_IF_ERROR(Linear(xn, split, rows, w.up, w.up_b, false, gu));
    RETURN_IF_ERROR(profiler_.Mark("gemm up_gate|up", stream_));
    CUDA_RETURN_IF_ERROR(SwiGlu(gu, rows, ffn, act, split, stream_));
    RETURN_IF_ERROR(profiler_.Mark("swiglu", stream_));
    RETURN_IF_ERROR(Linear(act, split, rows, w.down, w.down_b, true, x));
    RETURN_IF_ERROR(profiler_.Mark("gemm down", stream_));
    return absl::OkStatus();
  }

  // y[rows, n] (+)= x[rows, k] w[n, k]ᵀ (+ bias). `x_split` is x's split pair (null when no
  // matrix is bf16).
  absl::Status Linear(const float* x, const void* x_split, int rows, const DeviceMatrix& w, const float* bias,
                      bool accumulate, float* y) {
    const int n = w.rows, k = w.cols;
    if (rows == 0) return absl::OkStatus();
    if (w.type == WeightType::kF32) {
      if (rows <= kGemvMaxRows) {
        CUDA_RETURN_IF_ERROR(GemvSmallRows(x, static_cast<const float*>(w.data), bias, rows, n, k, accumulate, y, stream_));
        return absl::OkStatus();
      }
      const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
      CUBLAS_RETURN_IF_ERROR(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &alpha,
                                         static_cast<const float*>(w.data), k, x, k, &beta, y, n));
      if (bias) CUDA_RETURN_IF_ERROR(AddBias(y, bias, rows, n, stream_));
      return absl::OkStatus();
    }
    // t: [2, rows, n] = (hi; lo) · wᵀ in one GEMM over 2 * rows columns (cuBLAS's view).
    ASSIGN_OR_RETURN(float* t, Typed<float>("gemm_pair", size_t(2) * rows * n));
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, 2 * rows, k, &alpha, w.data,
                                        CUDA_R_16BF, k, x_split, CUDA_R_16BF, k, &beta, t, CUDA_R_32F, n,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CUDA_RETURN_IF_ERROR(CombineSplit(t, bias, rows, n, accumulate, y, stream_));
    return absl::OkStatus();
  }

  // The split-pair buffer for activations of `rows` rows of any width, or null when no
  // matrix is bf16.
  absl::StatusOr<void*> Split(int rows) {
    if (!dev_->any_bf16) return nullptr;
    const ModelConfig& cfg = weights_->config;
    const int widest = std::max({cfg.hidden_size, cfg.v_dim(), cfg.ffn_dim()});
    return scratch_.Get("split", size_t(2) * rows * widest * 2);
  }

  template <typename T>
  absl::StatusOr<T*> Typed(const std::string& name, size_t count) {
    ASSIGN_OR_RETURN(void* p, scratch_.Get(name, std::max<size_t>(count, 1) * sizeof(T)));
    return static_cast<T*>(p);
  }

  absl::Status CheckSlot(int slot, int64_t buffer_floats) const {
    if (slot < 0 || slot >= states_.num_slots()) {
      return absl::OutOfRangeError("state slot " + std::to_string(slot) + " out of range (" +
                                   std::to_string(states_.num_slots()) + " slots)");
    }
    if (buffer_floats >= 0 && buffer_floats != layout_.slot_floats()) {
      return absl::InvalidArgumentError("buffer has " + std::to_string(buffer_floats) + " floats, a slot has " +
                                        std::to_string(layout_.slot_floats()));
    }
    return absl::OkStatus();
  }

  std::shared_ptr<const ModelWeights> weights_;
  int device_;
  StateLayout layout_;
  ProjColumns cols_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::unique_ptr<DeviceWeights> dev_;
  StatePool states_;
  Scratch scratch_;
  HostCopier copier_;
  StageProfiler profiler_;
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
  CUDA_RETURN_IF_ERROR(cudaMemset(a, 1, bytes));
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

absl::StatusOr<double> MeasureBf16GemmFlops(int n) {
  void* a = nullptr;
  void* c = nullptr;
  cublasHandle_t handle = nullptr;
  cudaEvent_t start, stop;
  const size_t elems = size_t(n) * n;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&a, elems * 2));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&c, elems * 4));
  CUDA_RETURN_IF_ERROR(cudaMemset(a, 0x3c, elems * 2));  // bf16 ~0.0117: non-zero, finite products
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  const float alpha = 1.0f, beta = 0.0f;
  auto gemm = [&] {
    return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, a, CUDA_R_16BF, n,
                        &beta, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  CUBLAS_RETURN_IF_ERROR(gemm());
  constexpr int kIters = 10;
  CUDA_RETURN_IF_ERROR(cudaEventRecord(start));
  for (int i = 0; i < kIters; ++i) CUBLAS_RETURN_IF_ERROR(gemm());
  CUDA_RETURN_IF_ERROR(cudaEventRecord(stop));
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cublasDestroy(handle);
  cudaFree(a);
  cudaFree(c);
  return 2.0 * double(n) * n * n * kIters / (ms / 1e3);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options) {
  const int count = CudaDeviceCount();
  if (count == 0) return absl::UnavailableError("no CUDA device is available on this machine (use --device cpu)");
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError("CUDA device " + std::to_string(options.device) + " does not exist (" +
                                      std::to_string(count) + " present)");
  }
  if (options.state_dtype != DType::kF32 && options.state_dtype != DType::kBF16) {
    return absl::InvalidArgumentError("CUDA state dtype must be F32 or BF16");
  }
  const ModelConfig& cfg = weights->config;
  if (!MlstmRecurrentSupports(cfg.qk_head_dim())) {
    return absl::InvalidArgumentError("CUDA backend: qk head dim " + std::to_string(cfg.qk_head_dim()) +
                                      " is larger than the mLSTM kernels support");
  }
  const StateType state_type = options.state_dtype == DType::kBF16 ? StateType::kBF16 : StateType::kF32;
  auto backend = std::make_unique<CudaBackend>(std::move(weights), options.device, state_type);
  RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::Status SetStageProfiling(Backend* backend, bool on) {
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  if (cuda == nullptr) return absl::InvalidArgumentError("stage profiling needs a CUDA backend");
  cuda->profiler().on = on;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> TakeStageProfile(Backend* backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  if (cuda == nullptr) return absl::InvalidArgumentError("stage profiling needs a CUDA backend");
  return cuda->profiler().Take();
}

}  // namespace xlserve::kernels
