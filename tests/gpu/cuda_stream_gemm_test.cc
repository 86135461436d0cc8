// StreamGemm (kernels/gemm_stream.cu) against a double-precision product on the host, plane by
// plane: every tile width and k-slice count, activation row counts on and off the 64-row
// warpgroup edges, weight rows off the tile edges and k off the 64-wide blocks; nothing past
// the planes is written. Its SwiGLU epilogue against the plain product followed by SwiGlu, bit
// for bit. Tagged "gpu" (sm_90 only: the kernel needs sm_90a).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// StreamGemmSwiGlu(config) against StreamGemm(config) then SwiGlu over the interleaved plane:
// the same products and the same maths, so the same bits; nothing past the activation written.
void CheckSwiGlu(int ffn, int k, int cols, int width, bool bias, bool fp32_out, std::mt19937& rng) {
  CAPTURE(ffn, k, cols, width, bias, fp32_out);
  const int n = 2 * ffn;
  const std::vector<__nv_bfloat16> x = RandomBf16(size_t(cols) * k, rng), w = RandomBf16(size_t(n) * k, rng);
  std::vector<float> b(n);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (auto& v : b) v = u(rng);
  const size_t count = size_t(cols) * ffn, guard = 4096;
  DeviceBuffer<__nv_bfloat16> dx(x.size()), dw(w.size()), act(count + guard), ref_act(count);
  DeviceBuffer<float> dbias(n), plane(size_t(cols) * n), out(count + guard), ref_out(count);
  REQUIRE(cudaMemcpy(dx.data, x.data(), x.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dw.data, w.data(), w.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dbias.data, b.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(act.data, 0xFF, (count + guard) * 2) == cudaSuccess);  // NaN
  REQUIRE(cudaMemset(out.data, 0xFF, (count + guard) * sizeof(float)) == cudaSuccess);
  const float* bias_ptr = bias ? dbias.data : nullptr;
  const kernels::SwiGluEpilogue fused{bias_ptr, fp32_out ? out.data : nullptr, {act.data, false}};
  REQUIRE(kernels::StreamGemmSwiGlu({width, 1}, dw.data, n, k, dx.data, cols, fused, nullptr) == cudaSuccess);
  REQUIRE(kernels::StreamGemm({width, 1}, dw.data, n, k, dx.data, cols, plane.data, nullptr) == cudaSuccess);
  REQUIRE(kernels::SwiGlu(kernels::GemmPlanes{plane.data, 1}, bias_ptr, true, cols, ffn, ref_out.data,
                          {ref_act.data, false}, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<uint16_t> got(count + guard), want(count);
  std::vector<float> got_f(count + guard), want_f(count);
  REQUIRE(cudaMemcpy(got.data(), act.data, got.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(want.data(), ref_act.data, want.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(got_f.data(), out.data, got_f.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(want_f.data(), ref_out.data, want_f.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  int bad = 0, bad_f = 0, written = 0;
  for (size_t i = 0; i < count; ++i) {
    bad += got[i] != want[i];
    if (fp32_out) bad_f += std::memcmp(&got_f[i], &want_f[i], 4) != 0;
  }
  for (size_t i = count; i < got.size(); ++i) written += got[i] != 0xFFFF;
  for (size_t i = fp32_out ? count : 0; i < got_f.size(); ++i) written += !std::isnan(got_f[i]);
  CHECK(bad == 0);
  CHECK(bad_f == 0);
  CHECK(written == 0);
}

TEST_CASE("the stream GEMM's SwiGLU epilogue gives the bits of the product followed by SwiGlu") {
  REQUIRE(kernels::StreamGemmAvailable());
  std::mt19937 rng(11);
  for (int cols : {1, 17, 64, 65, 130, 192}) {
    for (int width : {64, 96, 128, 176}) {
      CheckSwiGlu(200, 1032, cols, width, true, false, rng);  // a partial last tile
      CheckSwiGlu(3 * width / 2, 520, cols, width, false, true, rng);
    }
  }
  CheckSwiGlu(1368, 4096, 191, 176, true, true, rng);
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
  // The SwiGLU epilogue: one k-slice, widths of whole group pairs, n of whole group pairs.
  DeviceBuffer<__nv_bfloat16> act(200 * 128);
  const kernels::SwiGluEpilogue e{nullptr, nullptr, {act.data, false}};
  CHECK(kernels::StreamGemmSwiGlu({168, 1}, w.data, 256, 128, x.data, 64, e, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmSwiGlu({96, 2}, w.data, 256, 128, x.data, 64, e, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmSwiGlu({96, 1}, w.data, 248, 128, x.data, 64, e, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmSwiGlu({96, 1}, w.data, 256, 128, x.data, 64, {nullptr, nullptr, {act.data, true}},
                                  nullptr) == cudaErrorInvalidValue);
}

}  // namespace
}  // namespace xlserve
