// LtGemm: the bf16 weight GEMMs over split-pair activations through cuBLASLt, with the
// algorithm chosen per shape by timing the library's candidates once.
//
// Why: for the skinny products of decode and verify (a few to a few hundred activation rows
// against 4096 x 4096 .. 21888 x 4096 weights) the default algorithm reached ~65% of the copy
// bandwidth on an H200; cuBLASLt's heuristic lists split-k and other tilings that stream the
// weights faster. Shapes with more rows (prefill) take the heuristic's first choice untimed.
// The chosen algorithm is fixed per shape for the life of the object.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <tuple>

#include "absl/status/statusor.h"

namespace xlserve::kernels {

class LtGemm {
 public:
  static absl::StatusOr<std::unique_ptr<LtGemm>> Create();
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // out [cols, n] fp32 (row-major; cuBLAS's n x cols column-major) = x [cols, k] · w[n, k]ᵀ,
  // x and w bf16 row-major, fp32 accumulation. Timing a new shape synchronises `stream`.
  absl::Status Run(const void* w, int n, int k, const void* x, int cols, float* out, cudaStream_t stream);

 private:
  LtGemm() = default;
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  absl::StatusOr<Plan*> PlanFor(const void* w, int n, int k, const void* x, int cols, float* out,
                                cudaStream_t stream);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<std::tuple<int, int, int>, Plan> plans_;  // (n, k, cols)
};

}  // namespace xlserve::kernels
