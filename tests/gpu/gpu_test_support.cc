#include "tests/gpu/gpu_test_support.h"

#include <catch2/catch.hpp>

#include "bench/shape_bench.h"
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

std::shared_ptr<const ModelWeights> SevenBHeadModel(uint32_t seed, double ffn_proj_factor) {
  ModelConfig cfg = bench::Xlstm7bConfig();
  cfg.hidden_size = 512;
  cfg.num_heads = 1;
  cfg.num_blocks = 2;
  cfg.vocab_size = 512;
  cfg.ffn_proj_factor = ffn_proj_factor;
  return bench::RandomBf16Weights(cfg, seed);
}

}  // namespace xlserve::testing
