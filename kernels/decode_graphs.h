// Decode and verify steps of the CUDA backend replayed as CUDA graphs (cuda_backend.cc).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

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
  // `generation` reads the scratch buffers' move count (ScratchArray).
  absl::Status Run(int key, const std::function<uint64_t()>& generation, cudaStream_t stream,
                   const std::function<absl::Status()>& enqueue) {
    Entry& g = graphs_[key];
    if (g.exec && g.built_at != generation()) {  // its buffers have moved
      cudaGraphExecDestroy(g.exec);
      g.exec = nullptr;
    }
    if (!g.exec && !g.failed && g.built_at == generation()) {
      cudaGraph_t graph = nullptr;
      ++builds_;
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
    ++builds_;
    RETURN_IF_ERROR(enqueue());
    g.built_at = generation();
    return absl::OkStatus();
  }

  // Steps of a graph shape that did not replay: eager runs and captures. After warm-up it stays
  // put while steps keep to the shapes warm-up ran.
  int64_t builds() const { return builds_; }

 private:
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    // Buffer generation of the last eager run: it allocated and planned everything, and a graph
    // captured at that generation stays valid while it holds.
    std::optional<uint64_t> built_at;
    bool failed = false;
  };
  std::map<int, Entry> graphs_;
  int64_t builds_ = 0;
};

}  // namespace xlserve::kernels
