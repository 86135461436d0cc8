// A device allocation for a test's scope; the test fails where cudaMalloc does.
#pragma once

#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <cstddef>

namespace xlserve::testing {

template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(size_t count) {
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&data), count * sizeof(T)) == cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(data); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* data = nullptr;
};

}  // namespace xlserve::testing
