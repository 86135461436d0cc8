// The accelerators linked into this binary. The CUDA backend is a build-time option
// (`--config=cuda`, chosen by scripts/setup.sh when nvcc is present): a build without it links
// none, and everything else in the binary is the same.
#pragma once

#include <string_view>

#include "engine/accelerator.h"

namespace xlserve::runtime {

// The accelerator selected by `name` ("cuda"), or null when this build does not include it.
// The object lives as long as the process.
const Accelerator* FindAccelerator(std::string_view name);

}  // namespace xlserve::runtime
