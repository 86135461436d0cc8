// The accelerators linked into this binary. The CUDA backend is a build-time option
// (`--config=cuda`, chosen by scripts/setup.sh when nvcc is present): a build without it links
// none, and everything else in the binary is the same.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "engine/accelerator.h"

namespace xlserve::runtime {

// The accelerator selected by `name` ("cuda"), or null when this build does not include it.
// The object lives as long as the process.
const Accelerator* FindAccelerator(std::string_view name);

// The graph builds of `backend` so far (Accelerator::DecodeGraphBuilds), read on the thread that
// drives it; empty where its accelerator does not count them (the CPU, tensor parallel).
inline std::function<int64_t()> GraphBuildCounter(const Backend* backend) {
  const Accelerator* accelerator = FindAccelerator(backend->name());
  if (accelerator == nullptr || !accelerator->DecodeGraphBuilds(backend).ok()) return {};
  return [accelerator, backend] { return accelerator->DecodeGraphBuilds(backend).value_or(0); };
}

}  // namespace xlserve::runtime
