// FindAccelerator for CPU-only builds (no `--config=cuda`): no device library is linked.
#include "runtime/accelerators.h"

namespace xlserve::runtime {

const Accelerator* FindAccelerator(std::string_view) { return nullptr; }

}  // namespace xlserve::runtime
