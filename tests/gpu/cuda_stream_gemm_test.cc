// StreamGemm (kernels/gemm_stream.cu) against a double-precision product on the host, plane by
// plane: every tile width and k-slice count, activation row counts on and off the 64-row
// warpgroup edges, weight rows off the tile edges and k off the 64-wide blocks; nothing past
// the planes is written. Tagged "gpu" (sm_90 only: the kernel needs sm_90a).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/launchers.h"

namespace xlserve {
namespace {

using kernels::StreamGemmConfig;

template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(size_t count) {
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&data), count * sizeof(T)) == cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(data); }
  T* data = nullptr;
};

std::vector<__nv_bfloat16> RandomBf16(size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> v(count);
  for (auto& x : v) x = __float2bfloat16(u(rng));
  return v;
}

// Checks every plane of StreamGemm(config) for x [cols, k] and w [n, k].
void CheckShape(int n, int k, int cols, StreamGemmConfig config, std::mt19937& rng) {
  CAPTURE(n, k, cols, config.width, config.slices);
  const std::vector<__nv_bfloat16> x = RandomBf16(size_t(cols) * k, rng), w = RandomBf16(size_t(n) * k, rng);
  const size_t planes = size_t(config.slices) * cols * n, guard = 4096;
  DeviceBuffer<__nv_bfloat16> dx(x.size()), dw(w.size());
  DeviceBuffer<float> dout(planes + guard);
  REQUIRE(cudaMemcpy(dx.data, x.data(), x.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dw.data, w.data(), w.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(dout.data, 0xFF, (planes + guard) * sizeof(float)) == cudaSuccess);  // NaN
  REQUIRE(kernels::StreamGemm(config, dw.data, n, k, dx.data, cols, dout.data, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> out(planes + guard);
  REQUIRE(cudaMemcpy(out.data(), dout.data, out.size() * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);

  const int kblocks = (k + 63) / 64;
  int bad = 0;
  for (int s = 0; s < config.slices; ++s) {
    const int k0 = std::min(k, 64 * (kblocks * s / config.slices));
    const int k1 = std::min(k, 64 * (kblocks * (s + 1) / config.slices));
    for (int c = 0; c < cols; ++c) {
      for (int j = 0; j < n; ++j) {
        double sum = 0, mag = 0;
        for (int i = k0; i < k1; ++i) {
          const double p = double(__bfloat162float(x[size_t(c) * k + i])) * __bfloat162float(w[size_t(j) * k + i]);
          sum += p;
          mag += std::fabs(p);
        }
        const float got = out[(size_t(s) * cols + c) * n + j];
        // fp32 accumulation in some order: within a few ulps of the sum of magnitudes.
        if (!(std::fabs(got - sum) <= 1e-6 * mag + 1e-30) && ++bad <= 5) {
          UNSCOPED_INFO("plane " << s << " row " << c << " col " << j << ": " << got << " vs " << sum);
        }
      }
    }
  }
  CHECK(bad == 0);
  int written = 0;
  for (size_t i = planes; i < out.size(); ++i) written += !std::isnan(out[i]);
  CHECK(written == 0);
}

TEST_CASE("the stream GEMM matches a double-precision product for every tiling, row count and k-slicing") {
  REQUIRE(kernels::StreamGemmAvailable());
  std::mt19937 rng(7);
  for (int cols : {1, 17, 64, 65, 128, 130, 191, 192}) {
    for (int width : kernels::kStreamGemmWidths) {
      CheckShape(2 * width + 10, 1032, cols, {width, 1}, rng);  // a partial last tile, k past the blocks
      CheckShape(width, 520, cols, {width, 3}, rng);
    }
  }
  for (int slices = 1; slices <= kernels::kStreamGemmMaxSlices; ++slices) {
    CheckShape(400, 4096, 191, {168, slices}, rng);
    CheckShape(400, 136, 64, {96, std::min(slices, 3)}, rng);  // three k-blocks at most
  }
}

TEST_CASE("the stream GEMM refuses shapes and configurations it does not compute") {
  REQUIRE(kernels::StreamGemmAvailable());
  DeviceBuffer<__nv_bfloat16> x(200 * 128), w(256 * 128);
  DeviceBuffer<float> out(4 * 200 * 256);
  CHECK(kernels::StreamGemm({96, 1}, w.data, 256, 128, x.data, 193, out.data, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({96, 1}, w.data, 255, 128, x.data, 64, out.data, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({96, 1}, w.data, 256, 60, x.data, 64, out.data, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({96, 3}, w.data, 256, 128, x.data, 64, out.data, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({100, 1}, w.data, 256, 128, x.data, 64, out.data, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmCandidates(256, 128, 193, 132).empty());
  for (const StreamGemmConfig& c : kernels::StreamGemmCandidates(21888, 4096, 191, 132)) {
    const int blocks = (21888 + c.width - 1) / c.width * c.slices;
    CHECK(blocks >= 99);
    CHECK(blocks <= 198);
  }
  CHECK_FALSE(kernels::StreamGemmCandidates(21888, 4096, 191, 132).empty());
}

}  // namespace
}  // namespace xlserve
