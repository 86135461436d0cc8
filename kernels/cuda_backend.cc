// CudaBackend: the engine's Backend on one GPU. It owns the device resources (stream, cuBLAS,
// weights, state slots, snapshots) and runs each Forward() as: plan on the host (batch_plan.h,
// deferred_commits.h) -> commits that cannot be fused, applied first -> the pass's kernels
// (forward_pass.h), eagerly or as a replayed CUDA graph (decode_graphs.h) -> sampling on the GPU
// (device_sampler.h) -> argmax (and, when asked, logits) to the host (host_copier.h).
// Steps that return no logits (tokens_only; the same tokens count and flags for every sequence)
// replay graphs; their tokens come back as a GPU argmax or as a token sampled after the graph.
#include "kernels/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "engine/backend_validation.h"
#include "engine/state_layout.h"
#include "kernels/batch_plan.h"
#include "kernels/cuda_check.h"
#include "kernels/decode_graphs.h"
#include "kernels/deferred_commits.h"
#include "kernels/device_sampler.h"
#include "kernels/device_weights.h"
#include "kernels/forward_pass.h"
#include "kernels/gemm_lt.h"
#include "kernels/host_copier.h"
#include "kernels/launchers.h"
#include "kernels/snapshot_pool.h"
#include "kernels/stage_profiler.h"
#include "kernels/state_pool.h"

namespace xlserve::kernels {
namespace {

DeferredStoreLayout StoreLayoutFor(const ModelConfig& cfg, const StateLayout& layout) {
  // A deferred forward carries at most 1 + the most drafts tokens per sequence.
  return DeferredStoreLayout{layout.num_layers, kMaxVerifyTokens, cfg.qk_dim(), cfg.v_dim(), cfg.num_heads};
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const ModelWeights> weights, int device, StateType state_type, Precision precision)
      : weights_(std::move(weights)),
        device_(device),
        precision_(precision),
        layout_(StateLayout::ForModel(weights_->config)),
        states_(layout_, state_type),
        snapshots_(std::make_unique<SnapshotPool>(&states_)),
        commits_(StoreLayoutFor(weights_->config, layout_)) {}

  ~CudaBackend() override {
    graphs_.Clear();
    pass_.reset();
    snapshots_.reset();
    dev_.reset();
    lt_.reset();
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
    ASSIGN_OR_RETURN(lt_, LtGemm::Create());
    pass_ = std::make_unique<ForwardPass>(weights_->config, dev_.get(), lt_.get(), cublas_, stream_, &states_,
                                          precision_, commits_.layout(), &profiler_);
    return absl::OkStatus();
  }

  std::string_view name() const override { return "cuda"; }
  const StateLayout& state_layout() const override { return layout_; }
  Precision precision() const override { return precision_; }
  // The pool has one slot more than it reports: the padding rows of graph-replayed decode
  // steps run on it.
  int num_slots() const override { return std::max(0, states_.num_slots() - 1); }

  absl::Status AllocateSlots(int num_slots) override {
    if (num_slots < 1) return absl::InvalidArgumentError("need at least one state slot");
    graphs_.Clear();
    RETURN_IF_ERROR(states_.Allocate(num_slots + 1));
    commits_.Resize(num_slots + 1);
    fresh_slots_.assign(num_slots + 1, 0);
    return absl::OkStatus();
  }

  absl::Status ResetSlot(int slot) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    commits_.Clear(slot);
    RETURN_IF_ERROR(states_.Reset(slot, stream_));
    fresh_slots_[slot] = 1;
    return absl::OkStatus();
  }

  bool SupportsSpeculation() const override { return true; }
  bool SamplesOnDevice() const override { return true; }
  int num_mtp_heads() const override { return pass_->num_mtp_heads(); }
  // A fixed estimate: a verify pass reads the same weights and states as a one-token step, and
  // docs/design.md §8 puts its extra GEMM rows at a few percent at small batch. (Measured end to
  // end on an H200, 7B shape, L = 2..4 at batch <= 8: 1.2-1.4x.)
  double VerifyCostRatio(int tokens) const override { return 1.0 + 0.05 * (tokens - 1); }

  absl::Status ReadSlot(int slot, std::span<float> out) const override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(out.size())));
    // A reader sees the committed state: a recorded commit is applied first. (The backend
    // object itself is not const; only this call's contract is.)
    RETURN_IF_ERROR(const_cast<CudaBackend*>(this)->ApplyPendingCommit(slot));
    return states_.Read(slot, out, stream_);
  }

  absl::Status WriteSlot(int slot, std::span<const float> in) override {
    RETURN_IF_ERROR(CheckSlot(slot, static_cast<int64_t>(in.size())));
    commits_.Clear(slot);
    fresh_slots_[slot] = 0;
    return states_.Write(slot, in, stream_);
  }

  int64_t snapshot_bytes() const override { return snapshots_->bytes(); }
  absl::Status AllocateSnapshots(int device, int host) override { return snapshots_->Allocate(device, host); }
  absl::Status SaveSnapshot(int slot, SnapshotRef dst) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    RETURN_IF_ERROR(ApplyPendingCommit(slot));
    return snapshots_->Save(slot, dst, stream_);
  }
  absl::Status RestoreSnapshot(SnapshotRef src, int slot) override {
    RETURN_IF_ERROR(CheckSlot(slot, -1));
    commits_.Clear(slot);
    fresh_slots_[slot] = 0;
    return snapshots_->Restore(src, slot, stream_);
  }
  absl::Status CopySnapshot(SnapshotRef src, SnapshotRef dst) override { return snapshots_->Copy(src, dst); }
  int64_t FreeDeviceBytes() const override {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return static_cast<int64_t>(free);
  }
  bool WantsWarmUp() const override { return true; }
  void SetShapeTuning(bool allowed) override { lt_->SetTuning(allowed); }
  std::vector<OpenChoice> OpenChoices() const override { return lt_->OpenChoices(); }
  absl::Status TakeCandidate(int id, int candidate, std::span<const double> pass_seconds) override {
    return lt_->TakeCandidate(id, candidate, pass_seconds);
  }

  absl::Status Forward(std::span<const SequenceInput> batch, ForwardOutput* out) override {
    const ModelConfig& cfg = weights_->config;
    RETURN_IF_ERROR(ValidateForwardBatch(batch, num_slots(), cfg.vocab_size, cfg.mtp.has_value(), true, true));
    for (const SequenceInput& s : batch) {
      if (s.defer_commit && s.tokens.size() > kMaxVerifyTokens) {
        return absl::InvalidArgumentError("forward: a deferred sequence carries at most " +
                                          std::to_string(kMaxVerifyTokens) + " tokens, got " +
                                          std::to_string(s.tokens.size()));
      }
    }
    const ForwardPlan plan = PlanForward(batch, num_slots(), pass_->Tiled(), profiler_.on, fresh_slots_, &commits_);
    for (const SequenceInput& s : batch) fresh_slots_[s.slot] = 0;
    RETURN_IF_ERROR(pass_->ApplyCommits(plan.commit_first));
    RETURN_IF_ERROR(profiler_.Mark("start", stream_));
    ASSIGN_OR_RETURN(const PassBuffers buffers, pass_->Prepare(plan));
    const auto enqueue = [&] { return pass_->Enqueue(plan, buffers); };
    if (plan.graph_step) {
      RETURN_IF_ERROR(graphs_.Run(plan.graph_key, [this] { return pass_->scratch_moves(); }, stream_, enqueue));
    } else {
      RETURN_IF_ERROR(enqueue());
    }
    RETURN_IF_ERROR(sampler_.Sample(batch, plan.trunk.row_offset, buffers.logits, cfg.vocab_size, stream_, &copier_,
                                    &profiler_, out));
    if (profiler_.on) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      RETURN_IF_ERROR(profiler_.Collect());
    }
    const auto copy_start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(CopyOutputs(batch, plan, buffers, out));
    if (profiler_.on) {
      profiler_.Add("logits to host",
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - copy_start).count());
    }
    return absl::OkStatus();
  }

  absl::Status Commit(std::span<const CommitInput> commits) override {
    for (const CommitInput& c : commits) RETURN_IF_ERROR(CheckSlot(c.slot, -1));
    for (const CommitInput& c : commits) fresh_slots_[c.slot] = 0;
    return commits_.Record(commits);
  }

  StageProfiler& profiler() { return profiler_; }
  const DecodeGraphs& graphs() const { return graphs_; }
  const LtGemm& gemms() const { return *lt_; }
  LtGemm& gemms() { return *lt_; }

 private:
  // Applies the slot's recorded commit to its state with the commit kernel.
  absl::Status ApplyPendingCommit(int slot) {
    const int slots[] = {slot};
    return pass_->ApplyCommits(commits_.TakePending(slots));
  }

  // ForwardOutput from the pass's device outputs: the argmax of every picked row and head row,
  // and the logits unless every sequence is tokens_only. Padding rows (graph steps) are dropped:
  // the caller's sequences come first.
  absl::Status CopyOutputs(std::span<const SequenceInput> batch, const ForwardPlan& plan, const PassBuffers& b,
                           ForwardOutput* out) {
    const int vocab = weights_->config.vocab_size;
    const int extra = b.head_logits != nullptr ? pass_->num_mtp_heads() : 0;
    const size_t head_rows = size_t(b.head_picked);
    const size_t picked = plan.picked();
    argmax_host_.resize(picked + head_rows);
    RETURN_IF_ERROR(copier_.Copy(argmax_host_.data(), b.argmax, argmax_host_.size() * sizeof(int32_t), stream_));
    out->vocab_size = vocab;
    out->row_offset.assign(plan.trunk.row_offset.begin(), plan.trunk.row_offset.begin() + batch.size() + 1);
    out->argmax.assign(argmax_host_.begin(), argmax_host_.begin() + out->row_offset.back());
    out->num_mtp_heads = extra;
    ScatterHeadRows(batch, plan.trunk, plan.heads, extra, argmax_host_.data() + picked, 1, &out->mtp_argmax);
    if (extra > 0) out->mtp_argmax.resize(size_t(out->row_offset.back()) * extra);
    const bool tokens_only =
        std::all_of(batch.begin(), batch.end(), [](const SequenceInput& s) { return s.tokens_only; });
    if (tokens_only) {
      out->logits.clear();
      out->mtp_logits.clear();
      return absl::OkStatus();
    }
    out->logits.resize(picked * vocab);
    RETURN_IF_ERROR(copier_.Copy(out->logits.data(), b.logits, out->logits.size() * sizeof(float), stream_));
    head_logits_host_.resize(head_rows * vocab);
    if (head_rows > 0) {
      RETURN_IF_ERROR(copier_.Copy(head_logits_host_.data(), b.head_logits,
                                   head_logits_host_.size() * sizeof(float), stream_));
    }
    ScatterHeadRows(batch, plan.trunk, plan.heads, extra, head_logits_host_.data(), vocab, &out->mtp_logits);
    return absl::OkStatus();
  }

  absl::Status CheckSlot(int slot, int64_t buffer_floats) const {
    if (slot < 0 || slot >= num_slots()) {
      return absl::OutOfRangeError("state slot " + std::to_string(slot) + " out of range (" +
                                   std::to_string(num_slots()) + " slots)");
    }
    if (buffer_floats >= 0 && buffer_floats != layout_.slot_floats()) {
      return absl::InvalidArgumentError("buffer has " + std::to_string(buffer_floats) + " floats, a slot has " +
                                        std::to_string(layout_.slot_floats()));
    }
    return absl::OkStatus();
  }

  std::shared_ptr<const ModelWeights> weights_;
  int device_;
  Precision precision_;
  StateLayout layout_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::unique_ptr<DeviceWeights> dev_;
  std::unique_ptr<LtGemm> lt_;
  StatePool states_;
  std::unique_ptr<SnapshotPool> snapshots_;
  DeferredCommits commits_;  // by slot, the scratch slot last
  // By slot: 1 while the slot holds the zero state ResetSlot left (no pass, write, restore or
  // commit since), so the chunkwise kernels skip reading it.
  std::vector<uint8_t> fresh_slots_;
  StageProfiler profiler_;
  std::unique_ptr<ForwardPass> pass_;
  DecodeGraphs graphs_;
  DeviceSampler sampler_;
  HostCopier copier_;
  std::vector<float> head_logits_host_;
  std::vector<int32_t> argmax_host_;
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
  auto backend = std::make_unique<CudaBackend>(std::move(weights), options.device, state_type, options.precision);
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

absl::StatusOr<int64_t> DecodeGraphBuilds(const Backend* backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(backend);
  if (cuda == nullptr) return absl::InvalidArgumentError("decode graphs need a CUDA backend");
  return cuda->graphs().builds();
}

absl::StatusOr<std::vector<GemmChoice>> GemmChoices(Backend* backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  if (cuda == nullptr) return absl::InvalidArgumentError("GEMM choices need a CUDA backend");
  return cuda->gemms().choices();
}

absl::Status SetGemmOpenGap(Backend* backend, float gap) {
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  if (cuda == nullptr) return absl::InvalidArgumentError("GEMM choices need a CUDA backend");
  if (!(gap >= 0)) return absl::InvalidArgumentError("the open gap is a fraction >= 0");
  cuda->gemms().SetOpenGap(gap);
  return absl::OkStatus();
}

}  // namespace xlserve::kernels
