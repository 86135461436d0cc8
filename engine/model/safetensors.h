// SafetensorsFile: one memory-mapped `.safetensors` file with its header parsed and checked.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON header mapping tensor names
// to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte after the
// header; "__metadata__" holds string pairs), then the tensor data.
// Open() checks everything that could make a later read go wrong: header length, JSON shape,
// dtype (F32/BF16/F16 only), shape, that each data range lies inside the file, that its size is
// numel * dtype size and that ranges do not overlap. Bad input gives an error naming the file
// and the tensor, never a crash.
//
// Ownership: the object owns the mapping (read-only, private); views from Find() stay valid
// until it is destroyed. The file must not be truncated by someone else while mapped (the OS
// would fault on the lost pages). Immutable after Open(), so safe to share across threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/tensor_view.h"

namespace xlserve {

class SafetensorsFile {
 public:
  // Maps and validates `path`. NotFound when the file cannot be opened; InvalidArgument for
  // any malformed content.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  bool Contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }
  // NotFound (naming the tensor and the file) when absent.
  absl::StatusOr<TensorView> Find(std::string_view name) const;
  // The header's "__metadata__" pairs (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile(std::string path, const void* base, size_t size)
      : path_(std::move(path)), base_(base), size_(size) {}

  std::string path_;
  const void* base_;
  size_t size_;
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace xlserve
