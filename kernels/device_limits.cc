// The GPU's practical limits that benchmarks report against (cuda_backend.h): device-to-device
// copy bandwidth and the bf16 GEMM rate, each timed with CUDA events on the current device.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "base/status_macros.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

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

}  // namespace xlserve::kernels
