// Device buffers of the CUDA backend that grow on demand and are reused across calls, so that
// steady-state steps allocate nothing. Each is a typed member of its owner (ForwardScratch in
// forward_pass.h, DeviceSampler); a buffer that grows moves, which makes a CUDA graph captured
// over it stale, so the buffers of one owner count their moves in one counter
// (DecodeGraphs::Run reads it). One owner, one thread.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

template <typename T>
class ScratchArray {
 public:
  explicit ScratchArray(uint64_t* moves) : moves_(moves) {}
  ~ScratchArray() {
    if (ptr_) cudaFree(ptr_);
  }
  ScratchArray(const ScratchArray&) = delete;
  ScratchArray& operator=(const ScratchArray&) = delete;

  // At least `count` elements (one when count is 0); the contents are undefined after a move.
  absl::StatusOr<T*> Get(size_t count) {
    const size_t bytes = std::max<size_t>(count, 1) * sizeof(T);
    if (bytes_ < bytes) {
      ++*moves_;
      cudaFree(ptr_);
      ptr_ = nullptr;
      bytes_ = 0;
      void* p = nullptr;
      CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes));
      ptr_ = static_cast<T*>(p);
      bytes_ = bytes;
    }
    return ptr_;
  }

 private:
  uint64_t* moves_;
  T* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace xlserve::kernels
