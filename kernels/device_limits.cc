// The GPU's practical limits that benchmarks report against (cuda_backend.h): device-to-device
// copy bandwidth and the bf16 GEMM rate, each timed with CUDA events on the current device.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "base/status_macros.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_check.h"

namespace xlserve::kernels {

namespace {

constexpr int kIters = 10;

// Seconds that `kIters` launches of `launch` take on the current stream, after one untimed run.
template <typename Launch>
absl::StatusOr<double> TimeIterations(Launch launch) {
  RETURN_IF_ERROR(launch());
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  absl::Status st = CudaStatus(cudaEventRecord(start), "cudaEventRecord", __FILE__, __LINE__);
  for (int i = 0; i < kIters && st.ok(); ++i) st = launch();
  if (st.ok()) st = CudaStatus(cudaEventRecord(stop), "cudaEventRecord", __FILE__, __LINE__);
  if (st.ok()) st = CudaStatus(cudaEventSynchronize(stop), "cudaEventSynchronize", __FILE__, __LINE__);
  float ms = 0;
  if (st.ok()) st = CudaStatus(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime", __FILE__, __LINE__);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  RETURN_IF_ERROR(st);
  return ms / 1e3;
}

}  // namespace

absl::StatusOr<double> MeasureCopyBandwidth(int64_t bytes) {
  void* a = nullptr;
  void* b = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&a, bytes));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&b, bytes));
  CUDA_RETURN_IF_ERROR(cudaMemset(a, 1, bytes));
  const absl::StatusOr<double> seconds = TimeIterations([&] {
    return CudaStatus(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpyAsync", __FILE__, __LINE__);
  });
  cudaFree(a);
  cudaFree(b);
  if (!seconds.ok()) return seconds.status();
  return 2.0 * double(bytes) * kIters / *seconds;
}

absl::StatusOr<double> MeasureBf16GemmFlops(int n) {
  void* a = nullptr;
  void* c = nullptr;
  cublasHandle_t handle = nullptr;
  const size_t elems = size_t(n) * n;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&a, elems * 2));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&c, elems * 4));
  CUDA_RETURN_IF_ERROR(cudaMemset(a, 0x3c, elems * 2));  // bf16 ~0.0117: non-zero, finite products
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle));
  const float alpha = 1.0f, beta = 0.0f;
  const absl::StatusOr<double> seconds = TimeIterations([&] {
    return CublasStatus(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, a,
                                     CUDA_R_16BF, n, &beta, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                        "cublasGemmEx", __FILE__, __LINE__);
  });
  cublasDestroy(handle);
  cudaFree(a);
  cudaFree(c);
  if (!seconds.ok()) return seconds.status();
  return 2.0 * double(n) * n * n * kIters / *seconds;
}

}  // namespace xlserve::kernels
