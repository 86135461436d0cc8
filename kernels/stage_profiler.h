// Per-stage GPU time of the CUDA backend's forward passes (bench --profile), from CUDA events.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

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
