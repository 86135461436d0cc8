// Device: where a backend runs, as users choose it (`--device`, the server's "device"): the
// CPU reference, an accelerator this binary was built with, or kAuto for the accelerator when
// one is present and the CPU otherwise. runtime/backend_factory.h turns it into a backend.
#pragma once

#include <string_view>
#include <utility>

namespace xlserve {

enum class Device { kAuto, kCpu, kCuda };

// How flags and JSON settings spell each device; kCuda's name is also its Accelerator's name().
inline constexpr std::pair<Device, std::string_view> kDeviceNames[] = {
    {Device::kAuto, "auto"}, {Device::kCpu, "cpu"}, {Device::kCuda, "cuda"}};

}  // namespace xlserve
