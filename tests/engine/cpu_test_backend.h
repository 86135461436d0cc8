// The CPU backend as the engine's speculation tests run it.
#pragma once

#include <catch2/catch.hpp>
#include <memory>

#include "engine/cpu/cpu_backend.h"

namespace xlserve::testing {

// Two threads and 8-token prefill chunks (short prompts already span chunks), `slots` slots.
inline std::unique_ptr<CpuBackend> MakeTestCpuBackend(std::shared_ptr<const ModelWeights> weights, int slots = 1) {
  CpuBackendOptions options;
  options.num_threads = 2;
  options.chunk_size = 8;
  auto backend = CpuBackend::Create(std::move(weights), options);
  REQUIRE(backend.ok());
  REQUIRE((*backend)->AllocateSlots(slots).ok());
  return std::move(*backend);
}

}  // namespace xlserve::testing
