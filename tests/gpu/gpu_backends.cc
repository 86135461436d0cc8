#include "tests/gpu/gpu_backends.h"

#include <catch2/catch.hpp>

#include "engine/cpu/cpu_backend.h"
#include "kernels/cuda_backend.h"

namespace xlserve::testing {

std::unique_ptr<Backend> MakeCudaBackend(std::shared_ptr<const ModelWeights> weights, int slots, DType state) {
  kernels::CudaBackendOptions options;
  options.state_dtype = state;
  auto b = kernels::CreateCudaBackend(std::move(weights), options);
  REQUIRE(b.ok());
  REQUIRE((*b)->AllocateSlots(slots).ok());
  return std::move(*b);
}

std::unique_ptr<Backend> MakeCpuBackend(std::shared_ptr<const ModelWeights> weights, int slots) {
  auto b = CpuBackend::Create(std::move(weights), CpuBackendOptions{});
  REQUIRE(b.ok());
  REQUIRE((*b)->AllocateSlots(slots).ok());
  return std::move(*b);
}

}  // namespace xlserve::testing
