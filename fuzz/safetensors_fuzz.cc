// SafetensorsFile::Open on arbitrary bytes: header length, JSON header, dtypes, shapes and
// data ranges must be checked before anything is read (a crash or an out-of-bounds read here is
// a finding). The bytes reach Open() as a memory file, the way a checkpoint would.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = ::memfd_create("safetensors_fuzz", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  if (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size)) std::abort();
  absl::StatusOr<std::unique_ptr<xlserve::SafetensorsFile>> file =
      xlserve::SafetensorsFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (file.ok()) {
    // Every view Open() accepted must lie inside the mapping: touch its first and last byte.
    for (const std::string& name : (*file)->names()) {
      absl::StatusOr<xlserve::TensorView> view = (*file)->Find(name);
      if (!view.ok()) std::abort();
      const size_t bytes = static_cast<size_t>(view->numel()) * xlserve::DTypeSize(view->dtype);
      if (bytes > 0) {
        const auto* p = static_cast<const volatile uint8_t*>(view->data);
        (void)p[0];
        (void)p[bytes - 1];
      }
    }
    for (const auto& [key, value] : (*file)->metadata()) (void)key.size(), (void)value.size();
  }
  ::close(fd);
  return 0;
}
