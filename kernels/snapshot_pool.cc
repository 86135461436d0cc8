#include "kernels/snapshot_pool.h"

#include <algorithm>
#include <string>

#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {
namespace {

// Buffers are carved out of allocations of at most this size: a few hundred cudaMalloc or
// cudaHostAlloc calls for a large pool instead of one per snapshot, and a failure that leaves
// the rest usable to report.
constexpr int64_t kChunkBytes = int64_t{1} << 30;
constexpr int64_t kAlign = 256;

}  // namespace

SnapshotPool::~SnapshotPool() {
  Free();
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
}

void SnapshotPool::Free() {
  // Copies in flight read or write these buffers.
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  cudaDeviceSynchronize();
  for (auto& tier : tiers_) {
    for (Buffer& b : tier) {
      if (b.last) cudaEventDestroy(b.last);
    }
    tier.clear();
  }
  for (void* p : device_chunks_) cudaFree(p);
  for (void* p : host_chunks_) cudaFreeHost(p);
  device_chunks_.clear();
  host_chunks_.clear();
}

absl::Status SnapshotPool::Allocate(int device, int host) {
  if (device < 0 || host < 0) return absl::InvalidArgumentError("snapshot buffer counts must be >= 0");
  Free();
  if (!copy_stream_) CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  const int64_t stride = (bytes() + kAlign - 1) / kAlign * kAlign;
  const int per_chunk = static_cast<int>(std::max<int64_t>(1, kChunkBytes / stride));
  for (SnapshotTier tier : {SnapshotTier::kDevice, SnapshotTier::kHost}) {
    const int count = tier == SnapshotTier::kDevice ? device : host;
    std::vector<Buffer>& buffers = tiers_[static_cast<int>(tier)];
    for (int done = 0; done < count;) {
      const int n = std::min(per_chunk, count - done);
      void* chunk = nullptr;
      const cudaError_t e = tier == SnapshotTier::kDevice ? cudaMalloc(&chunk, n * stride)
                                                          : cudaHostAlloc(&chunk, n * stride, cudaHostAllocDefault);
      if (e != cudaSuccess) {
        cudaGetLastError();
        const char* where = tier == SnapshotTier::kDevice ? "GPU" : "pinned host";
        const int want = count;
        Free();
        return absl::ResourceExhaustedError("cannot allocate " + std::to_string(want) + " state snapshots of " +
                                            std::to_string(bytes() >> 20) + " MiB in " + where +
                                            " memory (failed after " + std::to_string(done) + ")");
      }
      (tier == SnapshotTier::kDevice ? device_chunks_ : host_chunks_).push_back(chunk);
      for (int i = 0; i < n; ++i) {
        Buffer b;
        b.data = static_cast<char*>(chunk) + i * stride;
        CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&b.last, cudaEventDisableTiming));
        buffers.push_back(b);
      }
      done += n;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotPool::Buffer*> SnapshotPool::Find(SnapshotRef ref) {
  std::vector<Buffer>& tier = tiers_[static_cast<int>(ref.tier)];
  if (ref.index < 0 || ref.index >= static_cast<int>(tier.size())) {
    return absl::OutOfRangeError("snapshot buffer " + std::to_string(ref.index) + " out of range (" +
                                 std::to_string(tier.size()) + " in its tier)");
  }
  return &tier[ref.index];
}

absl::Status SnapshotPool::Run(char* dst_state, char* dst_m, const char* src_state, const char* src_m, Buffer* a,
                               Buffer* b, cudaStream_t stream) {
  for (Buffer* buf : {a, b}) {
    if (buf) CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, buf->last, 0));
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst_state, src_state, slots_->state_bytes(), cudaMemcpyDefault, stream));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst_m, src_m, slots_->m_bytes(), cudaMemcpyDefault, stream));
  for (Buffer* buf : {a, b}) {
    if (buf) CUDA_RETURN_IF_ERROR(cudaEventRecord(buf->last, stream));
  }
  return absl::OkStatus();
}

absl::Status SnapshotPool::Save(int slot, SnapshotRef dst, cudaStream_t stream) {
  ASSIGN_OR_RETURN(Buffer * to, Find(dst));
  return Run(to->data, to->data + slots_->state_bytes(), static_cast<const char*>(slots_->state_of(slot)),
             reinterpret_cast<const char*>(slots_->m_of(slot)), to, nullptr, stream);
}

absl::Status SnapshotPool::Restore(SnapshotRef src, int slot, cudaStream_t stream) {
  ASSIGN_OR_RETURN(Buffer * from, Find(src));
  return Run(static_cast<char*>(slots_->state_of(slot)), reinterpret_cast<char*>(slots_->m_of(slot)), from->data,
             from->data + slots_->state_bytes(), from, nullptr, stream);
}

absl::Status SnapshotPool::Copy(SnapshotRef src, SnapshotRef dst) {
  ASSIGN_OR_RETURN(Buffer * from, Find(src));
  ASSIGN_OR_RETURN(Buffer * to, Find(dst));
  if (from == to) return absl::OkStatus();
  return Run(to->data, to->data + slots_->state_bytes(), from->data, from->data + slots_->state_bytes(), from, to,
             copy_stream_);
}

}  // namespace xlserve::kernels
