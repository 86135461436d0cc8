// A second stream for work of one pass that may run beside the main stream's: Fork makes it wait
// for everything the main stream has enqueued so far, Join makes the main stream wait for
// everything enqueued on it since. Event fork and join are also legal inside a graph capture.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

class SideStream {
 public:
  SideStream() = default;
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;
  ~SideStream() {
    if (fork_) cudaEventDestroy(fork_);
    if (join_) cudaEventDestroy(join_);
    if (side_) cudaStreamDestroy(side_);
  }

  absl::StatusOr<cudaStream_t> Fork(cudaStream_t main) {
    if (side_ == nullptr) {
      CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
      CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
      CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
    }
    CUDA_RETURN_IF_ERROR(cudaEventRecord(fork_, main));
    CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side_, fork_, 0));
    return side_;
  }
  absl::Status Join(cudaStream_t main) {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(join_, side_));
    CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(main, join_, 0));
    return absl::OkStatus();
  }

 private:
  cudaStream_t side_ = nullptr;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
};

}  // namespace xlserve::kernels
