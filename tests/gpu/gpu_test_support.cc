#include "tests/gpu/gpu_test_support.h"

#include <catch2/catch.hpp>

#include "engine/cpu/cpu_backend.h"
#include "kernels/cuda_backend.h"

namespace xlserve::testing {

std::unique_ptr<Backend> MakeCudaBackend(std::shared_ptr<const ModelWeights> weights, int slots, DType state,
                                         Precision precision) {
  kernels::CudaBackendOptions options;
  options.state_dtype = state;
  options.precision = precision;
  auto b = kernels::CreateCudaBackend(std::move(weights), options);
  REQUIRE(b.ok());
  REQUIRE((*b)->AllocateSlots(slots).ok());
  return std::move(*b);
}

std::unique_ptr<Backend> MakeCpuBackend(std::shared_ptr<const ModelWeights> weights, int slots, Precision precision) {
  CpuBackendOptions options;
  options.precision = precision;
  auto b = CpuBackend::Create(std::move(weights), options);
  REQUIRE(b.ok());
  REQUIRE((*b)->AllocateSlots(slots).ok());
  return std::move(*b);
}

}  // namespace xlserve::testing
