#include "engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace xlserve {
namespace {

using json = nlohmann::json;

// The reference implementation refuses larger headers; so do we, before reading them.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
// nlohmann's parser recurses per nesting level; a real header nests 3 deep, so anything far
// deeper is corrupt and is refused before it could exhaust the stack.
constexpr int kMaxJsonDepth = 32;

int JsonNestingDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '{' || ch == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (ch == '}' || ch == ']') {
      --depth;
    }
  }
  return max_depth;
}

bool ParseDType(std::string_view name, DType& out) {
  if (name == "F32") {
    out = DType::kF32;
  } else if (name == "BF16") {
    out = DType::kBF16;
  } else if (name == "F16") {
    out = DType::kF16;
  } else {
    return false;
  }
  return true;
}

bool IsNonNegativeInteger(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

struct ByteRange {
  uint64_t begin, end;
  const std::string* name;
};

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (base_ != nullptr) munmap(const_cast<void*>(base_), size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) out.push_back(name);
  return out;
}

absl::StatusOr<TensorView> SafetensorsFile::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor ", std::string(name), " not found in ", path_));
  }
  return it->second;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open safetensors file ", path, ": ", std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path, " is not a regular file"));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path, " is truncated: ", file_size,
                                                   " bytes, too short for the 8-byte header length"));
  }
  void* base = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (base == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("cannot mmap safetensors file ", path, ": ", std::strerror(mmap_errno)));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path, base, file_size));
  auto error = [&path](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path, ": ", parts...));
  };

  const auto* bytes = static_cast<const unsigned char*>(base);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > file_size - 8) {
    return error("header length ", header_len, " exceeds the ", file_size - 8,
                 " bytes that follow it (truncated or corrupt file)");
  }
  if (header_len > kMaxHeaderBytes) {
    return error("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes + 8), header_len);
  if (JsonNestingDepth(header_text) > kMaxJsonDepth) {
    return error("header JSON nests deeper than ", kMaxJsonDepth, " levels");
  }
  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    return error("header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) return error("header is not a JSON object");

  const uint64_t data_size = file_size - 8 - header_len;
  const char* data = reinterpret_cast<const char*>(bytes + 8 + header_len);
  std::vector<ByteRange> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return error("__metadata__ is not a JSON object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) return error("__metadata__ value of \"", key, "\" is not a string");
        file->metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) return error("tensor ", name, ": entry is not a JSON object");
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return error("tensor ", name, ": missing or non-string \"dtype\"");
    }
    TensorView view;
    if (!ParseDType(dtype_it->get<std::string>(), view.dtype)) {
      return error("tensor ", name, " has unsupported dtype ", dtype_it->get<std::string>(),
                   " (supported: F32, BF16, F16)");
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return error("tensor ", name, ": missing or non-array \"shape\"");
    }
    // Product of the dims, saturated: a real tensor's bytes fit in the file, so anything
    // above data_size is already wrong and the exact value no longer matters.
    uint64_t numel = 1;
    for (const json& dim : *shape_it) {
      if (!IsNonNegativeInteger(dim)) {
        return error("tensor ", name, ": shape ", shape_it->dump(), " has a dimension that is not a non-negative integer");
      }
      const uint64_t d = dim.get<uint64_t>();
      view.shape.push_back(static_cast<int64_t>(std::min<uint64_t>(d, uint64_t{1} << 62)));
      numel = (d != 0 && numel > data_size / d) ? data_size + 1 : numel * d;
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !IsNonNegativeInteger((*offsets_it)[0]) || !IsNonNegativeInteger((*offsets_it)[1])) {
      return error("tensor ", name, ": \"data_offsets\" must be two non-negative integers");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return error("tensor ", name, ": data_offsets [", begin, ", ", end, "] lie outside the ", data_size,
                   "-byte data section (truncated or corrupt file)");
    }
    const uint64_t want = numel > data_size ? data_size + 1 : numel * DTypeSize(view.dtype);
    if (end - begin != want) {
      return error("tensor ", name, ": data_offsets [", begin, ", ", end, "] hold ", end - begin,
                   " bytes, but shape [", absl::StrJoin(view.shape, ", "), "] of ",
                   std::string(DTypeName(view.dtype)), " needs ",
                   numel > data_size ? std::string("more than the file holds") : absl::StrCat(want));
    }
    view.data = data + begin;
    auto [it, inserted] = file->tensors_.emplace(name, std::move(view));
    ranges.push_back({begin, end, &it->first});
  }

  std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return error("tensors ", *ranges[i - 1].name, " [", ranges[i - 1].begin, ", ", ranges[i - 1].end, ") and ",
                   *ranges[i].name, " [", ranges[i].begin, ", ", ranges[i].end, ") overlap");
    }
  }
  return file;
}

}  // namespace xlserve
