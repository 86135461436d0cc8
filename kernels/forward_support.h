// Host-side helpers of the CUDA backend's forward pass: scratch buffers that grow on demand,
// decode and verify steps replayed as CUDA graphs, device-to-host copies through pinned memory,
// and per-stage timing with CUDA events. Each belongs to one backend and its engine thread.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "engine/util/thread_pool.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

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
      ++generation_;
      cudaFree(b.ptr);
      b.ptr = nullptr;
      b.bytes = 0;
      CUDA_RETURN_IF_ERROR(cudaMalloc(&b.ptr, bytes));
      b.bytes = bytes;
    }
    return b.ptr;
  }
  // Changes whenever a buffer moves: CUDA graphs captured before then are stale.
  uint64_t generation() const { return generation_; }

 private:
  struct Buffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  std::map<std::string, Buffer> buffers_;
  uint64_t generation_ = 0;
};

// Greedy decode and verify steps replayed as CUDA graphs, one per shape (batch-size bucket, a
// power of two, the padding rows on a scratch slot; tokens per sequence; flags). A shape's first
// step runs eagerly (allocating its buffers and planning its GEMMs), the second is captured,
// later ones replay it.
class DecodeGraphs {
 public:
  ~DecodeGraphs() { Clear(); }
  void Clear() {
    for (auto& [key, g] : graphs_) {
      if (g.exec) cudaGraphExecDestroy(g.exec);
    }
    graphs_.clear();
  }
  // Runs `enqueue` (the step's kernels on `stream`) for shape `key` as a graph when it can.
  // `generation` reads Scratch::generation().
  absl::Status Run(int key, const std::function<uint64_t()>& generation, cudaStream_t stream,
                   const std::function<absl::Status()>& enqueue) {
    Entry& g = graphs_[key];
    if (g.exec && g.built_at != generation()) {  // its buffers have moved
      cudaGraphExecDestroy(g.exec);
      g.exec = nullptr;
    }
    if (!g.exec && !g.failed && g.built_at == generation()) {
      cudaGraph_t graph = nullptr;
      CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      const absl::Status captured = enqueue();
      const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
      if (!captured.ok() || ended != cudaSuccess || g.built_at != generation() ||
          cudaGraphInstantiate(&g.exec, graph, 0) != cudaSuccess) {
        g.exec = nullptr;
        g.failed = true;  // a step that cannot be captured runs eagerly from now on
        cudaGetLastError();
      }
      if (graph) cudaGraphDestroy(graph);
    }
    if (g.exec) {
      CUDA_RETURN_IF_ERROR(cudaGraphLaunch(g.exec, stream));
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(enqueue());
    g.built_at = generation();
    return absl::OkStatus();
  }

 private:
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    // Buffer generation of the last eager run: it allocated and planned everything, and a graph
    // captured at that generation stays valid while it holds.
    std::optional<uint64_t> built_at;
    bool failed = false;
  };
  std::map<int, Entry> graphs_;
};

// Logits of at least this many bytes reach the host through pinned memory and a parallel
// host copy: a pageable device-to-host copy ran at ~10 GB/s, 2.5 ms of a 20 ms step at batch
// 128 (25.7 MB of logits).
constexpr size_t kPinnedCopyMinBytes = size_t{4} << 20;
constexpr int kHostCopyThreads = 8;

// Copies device memory to pageable host memory; owns its pinned staging buffer and the
// threads that spread a large copy out of it (started once: a thread per copy cost more than
// the copy at small batch).
class HostCopier {
 public:
  HostCopier() : threads_(kHostCopyThreads) {}
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
    const int64_t grain = int64_t{1} << 20;
    threads_.ParallelFor(static_cast<int64_t>(bytes), grain, [&](int64_t begin, int64_t end) {
      std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(pinned_) + begin, end - begin);
    });
    return absl::OkStatus();
  }

 private:
  ThreadPool threads_;
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

}  // namespace xlserve::kernels
