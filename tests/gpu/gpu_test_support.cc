#include "tests/gpu/gpu_test_support.h"

#include <catch2/catch.hpp>
#include <cmath>

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

double MaxAbsDiff(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - b[i]);
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst;
}

}  // namespace xlserve::testing
