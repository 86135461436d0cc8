// TensorView: a non-owning, read-only, row-major view of one checkpoint tensor.
//
// Lifetime: `data` points into memory owned elsewhere (a memory-mapped SafetensorsFile, kept
// alive by a Checkpoint); a view is valid only while that owner lives. Copying a view copies
// the pointer, never the data. Alignment of `data` is whatever the file gives (the mapping is
// page-aligned, so it is the alignment of the tensor's byte offset in the file).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/util/dtype.h"

namespace xlserve {

// `data` is null for absent optional tensors (e.g. biases when use_bias is false).
struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;

  bool present() const { return data != nullptr; }
  int64_t numel() const;  // product of the shape; 1 for a 0-d tensor
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
  // Rows [begin, begin + count) of a 2-D tensor, or elements of a 1-D tensor (generally:
  // slices of the first dimension). Precondition: 0 <= begin, count and begin + count <= rows();
  // a range outside the tensor yields an absent view rather than a pointer past the data.
  TensorView Slice(int64_t begin, int64_t count) const;
};

}  // namespace xlserve
