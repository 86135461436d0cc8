// CUDA and cuBLAS errors as absl::Status values naming the file and line of the failing call.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "absl/status/status.h"
#include "base/status_macros.h"

namespace xlserve::kernels {

inline absl::Status CudaStatus(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                             cudaGetErrorString(e));
}

inline absl::Status CublasStatus(cublasStatus_t e, const char* what, const char* file, int line) {
  if (e == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(std::string(file) + ":" + std::to_string(line) + ": " + what + ": cuBLAS status " +
                             std::to_string(static_cast<int>(e)));
}

}  // namespace xlserve::kernels

#define CUDA_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::xlserve::kernels::CudaStatus((expr), #expr, __FILE__, __LINE__))
#define CUBLAS_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::xlserve::kernels::CublasStatus((expr), #expr, __FILE__, __LINE__))
