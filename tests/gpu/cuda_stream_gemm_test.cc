// StreamGemm (kernels/gemm_stream.cu) against a double-precision product on the host, plane by
// plane: every tile width and k-slice count, activation row counts on and off the 64-row
// warpgroup edges, weight rows off the tile edges and k off the 64-wide blocks; nothing past
// the planes is written. The same for its narrow kernel (gemm_stream_narrow.cu) over 1-32 rows.
// Its SwiGLU epilogue (the narrow kernel's over k-slices too) against the plain product followed
// by SwiGlu, bit for bit. The small-row GEMV's SwiGLU form (GemvBf16SwiGlu) against the GEMV
// followed by SwiGlu, bit for bit. Tagged "gpu" (sm_90 only: StreamGemm needs sm_90a).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <vector>

#include "kernels/launchers.h"
#include "tests/gpu/device_buffer.h"

namespace xlserve {
namespace {

using kernels::StreamGemmConfig;
using testing::DeviceBuffer;

std::vector<__nv_bfloat16> RandomBf16(size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> v(count);
  for (auto& x : v) x = __float2bfloat16(u(rng));
  return v;
}

// Checks every plane of StreamGemm(config) for x [cols, k] and w [n, k].
void CheckShape(int n, int k, int cols, StreamGemmConfig config, std::mt19937& rng) {
  CAPTURE(n, k, cols, config.width, config.slices, config.narrow, config.stages);
  const std::vector<__nv_bfloat16> x = RandomBf16(size_t(cols) * k, rng), w = RandomBf16(size_t(n) * k, rng);
  const size_t planes = size_t(config.slices) * cols * n, guard = 4096;
  DeviceBuffer<__nv_bfloat16> dx(x.size()), dw(w.size());
  DeviceBuffer<float> dout(planes + guard);
  REQUIRE(cudaMemcpy(dx.data, x.data(), x.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dw.data, w.data(), w.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(dout.data, 0xFF, (planes + guard) * sizeof(float)) == cudaSuccess);  // NaN
  REQUIRE(kernels::StreamGemm(config, dw.data, n, k, dx.data, cols, nullptr, dout.data, nullptr) == cudaSuccess);
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

TEST_CASE("the narrow stream GEMM matches a double-precision product for every tiling, row count and k-slicing") {
  REQUIRE(kernels::StreamGemmAvailable());
  std::mt19937 rng(11);
  // Rows on and off the 8-, 16- and 32-row activation tiles; a partial last weight tile; k past
  // the blocks.
  for (int cols : {1, 3, 8, 9, 16, 17, 32}) {
    for (const kernels::StreamGemmTiling& t : kernels::kStreamGemmNarrowTilings) {
      CheckShape(2 * t.width + 10, 1032, cols, {t.width, 1, true, t.stages}, rng);
      CheckShape(t.width + 2, 1544, cols, {t.width, 4, true, t.stages}, rng);
    }
  }
  for (int slices = 1; slices <= kernels::kStreamGemmMaxSlices; ++slices) {
    CheckShape(1000, 4096, 4, {64, slices, true, 8}, rng);  // more k-blocks a slice than stages
  }
  // The candidates of a few rows include every narrow tiling, and each of them runs the shape.
  const std::vector<StreamGemmConfig> candidates = kernels::StreamGemmCandidates(12304, 4096, 4, 132);
  int narrow = 0;
  for (const StreamGemmConfig& c : candidates) {
    narrow += c.narrow;
    CHECK(kernels::StreamGemmRuns(c, 12304, 4096, 4));
  }
  CHECK(narrow == int(std::size(kernels::kStreamGemmNarrowTilings)) * kernels::kStreamGemmMaxSlices);
  for (const StreamGemmConfig& c : kernels::StreamGemmCandidates(12304, 4096, 33, 132)) CHECK_FALSE(c.narrow);
}

// Compares a SwiGLU activation with its reference: the first bf16_checked of act (bf16, bf16_total
// written or guard) and fp32_checked of out (fp32, fp32_total) must hold the reference's bits, the
// rest must keep the NaN fill (nothing written past the activation).
void CheckActivation(const __nv_bfloat16* act, const __nv_bfloat16* ref_act, size_t bf16_checked, size_t bf16_total,
                     const float* out, const float* ref_out, size_t fp32_checked, size_t fp32_total) {
  std::vector<uint16_t> got(bf16_total), want(bf16_checked);
  std::vector<float> got_f(fp32_total), want_f(fp32_checked);
  REQUIRE(cudaMemcpy(got.data(), act, got.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(want.data(), ref_act, want.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(got_f.data(), out, got_f.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(want_f.data(), ref_out, want_f.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  int bad = 0, bad_f = 0, written = 0;
  for (size_t i = 0; i < bf16_checked; ++i) bad += got[i] != want[i];
  for (size_t i = 0; i < fp32_checked; ++i) bad_f += std::memcmp(&got_f[i], &want_f[i], 4) != 0;
  for (size_t i = bf16_checked; i < got.size(); ++i) written += got[i] != 0xFFFF;
  for (size_t i = fp32_checked; i < got_f.size(); ++i) written += !std::isnan(got_f[i]);
  CHECK(bad == 0);
  CHECK(bad_f == 0);
  CHECK(written == 0);
}

// StreamGemmSwiGlu(config) against StreamGemm(config) then SwiGlu over the interleaved planes:
// the same products and the same maths, so the same bits; nothing past the activation written.
void CheckSwiGlu(int ffn, int k, int cols, StreamGemmConfig config, bool bias, bool fp32_out, std::mt19937& rng) {
  CAPTURE(ffn, k, cols, config.width, config.slices, config.narrow, config.stages, bias, fp32_out);
  const int n = 2 * ffn;
  const std::vector<__nv_bfloat16> x = RandomBf16(size_t(cols) * k, rng), w = RandomBf16(size_t(n) * k, rng);
  std::vector<float> b(n);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (auto& v : b) v = u(rng);
  const size_t count = size_t(cols) * ffn, guard = 4096;
  DeviceBuffer<__nv_bfloat16> dx(x.size()), dw(w.size()), act(count + guard), ref_act(count);
  DeviceBuffer<float> dbias(n), plane(size_t(config.slices) * cols * n), out(count + guard), ref_out(count);
  REQUIRE(cudaMemcpy(dx.data, x.data(), x.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dw.data, w.data(), w.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dbias.data, b.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(act.data, 0xFF, (count + guard) * 2) == cudaSuccess);  // NaN
  REQUIRE(cudaMemset(out.data, 0xFF, (count + guard) * sizeof(float)) == cudaSuccess);
  const float* bias_ptr = bias ? dbias.data : nullptr;
  const kernels::SwiGluEpilogue fused{bias_ptr, fp32_out ? out.data : nullptr, {act.data, false}};
  REQUIRE(kernels::StreamGemmSwiGlu(config, dw.data, n, k, dx.data, cols, fused, nullptr) == cudaSuccess);
  REQUIRE(kernels::StreamGemm(config, dw.data, n, k, dx.data, cols, nullptr, plane.data, nullptr) == cudaSuccess);
  REQUIRE(kernels::SwiGlu(kernels::GemmPlanes{plane.data, config.slices}, bias_ptr, true, cols, ffn, ref_out.data,
                          {ref_act.data, false}, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CheckActivation(act.data, ref_act.data, count, count + guard, out.data, ref_out.data, fp32_out ? count : 0,
                  count + guard);
}

TEST_CASE("the stream GEMM's SwiGLU epilogue gives the bits of the product followed by SwiGlu") {
  REQUIRE(kernels::StreamGemmAvailable());
  std::mt19937 rng(11);
  for (int cols : {1, 17, 64, 65, 130, 192}) {
    for (int width : {64, 96, 128, 176}) {
      CheckSwiGlu(200, 1032, cols, {width, 1}, true, false, rng);  // a partial last tile
      CheckSwiGlu(3 * width / 2, 520, cols, {width, 1}, false, true, rng);
    }
  }
  CheckSwiGlu(1368, 4096, 191, {176, 1}, true, true, rng);
  // The narrow kernel, whose k-slices meet in a cluster.
  for (int cols : {1, 3, 8, 9, 16, 17, 32}) {
    for (const kernels::StreamGemmTiling& t : kernels::kStreamGemmNarrowTilings) {
      for (int slices = 1; slices <= kernels::kStreamGemmMaxSlices; ++slices) {
        CheckSwiGlu(200, 1032, cols, {t.width, slices, true, t.stages}, slices % 2 == 1, slices < 3, rng);
      }
    }
  }
  CheckSwiGlu(10944, 4096, 4, {128, 3, true, 6}, true, false, rng);  // the 7B up projection
}

// GemvBf16SwiGlu against GemvBf16SmallRows (bias included) then SwiGlu over the interleaved
// product: the same sums in the same order, so the same bits; nothing past the activation written.
void CheckGemvSwiGlu(int ffn, int k, int rows, bool x_bf16, bool bias, bool fp32_out, int bf16_forms,
                     std::mt19937& rng) {
  CAPTURE(ffn, k, rows, x_bf16, bias, fp32_out, bf16_forms);
  const int n = 2 * ffn;
  const std::vector<__nv_bfloat16> w = RandomBf16(size_t(n) * k, rng);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(size_t(rows) * k), b(n);
  for (auto& v : x) v = x_bf16 ? __bfloat162float(__float2bfloat16(u(rng))) : u(rng);
  for (auto& v : b) v = 0.5f * u(rng);
  std::vector<__nv_bfloat16> xb(x.size());
  for (size_t i = 0; i < x.size(); ++i) xb[i] = __float2bfloat16(x[i]);
  const size_t count = size_t(rows) * ffn, guard = 4096, forms = std::max(bf16_forms, 1);
  DeviceBuffer<__nv_bfloat16> dw(w.size()), dxb(xb.size()), act(forms * count + guard), ref_act(forms * count);
  DeviceBuffer<float> dx(x.size()), dbias(n), gu(size_t(rows) * n), out(count + guard), ref_out(count);
  REQUIRE(cudaMemcpy(dw.data, w.data(), w.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dxb.data, xb.data(), xb.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dx.data, x.data(), x.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dbias.data, b.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(act.data, 0xFF, (forms * count + guard) * 2) == cudaSuccess);  // NaN
  REQUIRE(cudaMemset(out.data, 0xFF, (count + guard) * sizeof(float)) == cudaSuccess);
  const void* xin = x_bf16 ? static_cast<const void*>(dxb.data) : dx.data;
  const float* bias_ptr = bias ? dbias.data : nullptr;
  const kernels::Bf16Activation fused{bf16_forms > 0 ? act.data : nullptr, bf16_forms == 2};
  const kernels::Bf16Activation reference{bf16_forms > 0 ? ref_act.data : nullptr, bf16_forms == 2};
  REQUIRE(kernels::GemvBf16SwiGlu(xin, x_bf16, dw.data, bias_ptr, rows, n, k, fp32_out ? out.data : nullptr, fused,
                                  nullptr) == cudaSuccess);
  REQUIRE(kernels::GemvBf16SmallRows(xin, x_bf16, dw.data, bias_ptr, rows, n, k, false, gu.data, nullptr) ==
          cudaSuccess);
  REQUIRE(kernels::SwiGlu(kernels::GemmPlanes{gu.data, 1}, nullptr, true, rows, ffn, ref_out.data, reference,
                          nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CheckActivation(act.data, ref_act.data, bf16_forms > 0 ? forms * count : 0, forms * count + guard, out.data,
                  ref_out.data, fp32_out ? count : 0, count + guard);
}

TEST_CASE("the small-row GEMV's SwiGLU form gives the bits of the GEMV followed by SwiGlu") {
  std::mt19937 rng(17);
  // k 520: each warp its own outputs; k 2056: eight warps split k. ffn 40: a partial block.
  for (int k : {520, 2056}) {
    for (int rows = 1; rows <= kernels::kGemvMaxRows; ++rows) {
      CheckGemvSwiGlu(40, k, rows, rows % 2 == 0, true, true, 0, rng);
      CheckGemvSwiGlu(72, k, rows, rows % 2 == 1, rows > 4, false, 1, rng);
      CheckGemvSwiGlu(40, k, rows, false, false, true, 2, rng);
    }
  }
  DeviceBuffer<__nv_bfloat16> x(8 * 128), w(88 * 128);
  DeviceBuffer<float> act(8 * 44);
  // n must be whole groups of up_gate and up rows, k whole 16-byte chunks, rows at most 8.
  CHECK(kernels::GemvBf16SwiGlu(x.data, true, w.data, nullptr, 1, 88, 128, act.data, {}, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::GemvBf16SwiGlu(x.data, true, w.data, nullptr, 1, 80, 124, act.data, {}, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::GemvBf16SwiGlu(x.data, true, w.data, nullptr, 9, 80, 128, act.data, {}, nullptr) ==
        cudaErrorInvalidValue);
}

TEST_CASE("the stream GEMM refuses shapes and configurations it does not compute") {
  REQUIRE(kernels::StreamGemmAvailable());
  DeviceBuffer<__nv_bfloat16> x(200 * 128), w(256 * 128);
  DeviceBuffer<float> out(4 * 200 * 256);
  CHECK(kernels::StreamGemm({96, 1}, w.data, 256, 128, x.data, 193, nullptr, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({96, 1}, w.data, 255, 128, x.data, 64, nullptr, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({96, 1}, w.data, 256, 60, x.data, 64, nullptr, out.data, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({96, 3}, w.data, 256, 128, x.data, 64, nullptr, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({100, 1}, w.data, 256, 128, x.data, 64, nullptr, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmCandidates(256, 128, 193, 132).empty());
  // The narrow kernel: at most 32 rows, and only its own tilings.
  CHECK(kernels::StreamGemm({64, 1, true, 8}, w.data, 256, 128, x.data, 33, nullptr, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({64, 1, true, 6}, w.data, 256, 128, x.data, 8, nullptr, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({96, 1, true, 8}, w.data, 256, 128, x.data, 8, nullptr, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK_FALSE(kernels::StreamGemmRuns({64, 1, true, 8}, 256, 128, 33));
  CHECK(kernels::StreamGemmRuns({64, 1, true, 8}, 256, 128, 32));
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
  CHECK(kernels::StreamGemmSwiGlu({64, 1, true, 8}, w.data, 256, 128, x.data, 33, e, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmSwiGlu({64, 2, true, 8}, w.data, 248, 128, x.data, 8, e, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmSwiGlu({96, 1}, w.data, 248, 128, x.data, 64, e, nullptr) == cudaErrorInvalidValue);
  CHECK(kernels::StreamGemmSwiGlu({96, 1}, w.data, 256, 128, x.data, 64, {nullptr, nullptr, {act.data, true}},
                                  nullptr) == cudaErrorInvalidValue);
}

}  // namespace
}  // namespace xlserve
