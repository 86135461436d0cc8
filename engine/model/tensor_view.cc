#include "engine/model/tensor_view.h"

namespace xlserve {

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

TensorView TensorView::Slice(int64_t begin, int64_t count) const {
  TensorView out;
  out.dtype = dtype;
  if (shape.empty() || data == nullptr || begin < 0 || count < 0 || begin + count > shape[0]) {
    return out;
  }
  int64_t row_elems = 1;
  for (size_t i = 1; i < shape.size(); ++i) row_elems *= shape[i];
  out.shape = shape;
  out.shape[0] = count;
  out.data = static_cast<const char*>(data) + begin * row_elems * DTypeSize(dtype);
  return out;
}

}  // namespace xlserve
