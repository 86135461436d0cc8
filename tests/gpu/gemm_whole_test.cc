// A GEMM written whole: StreamGemm's bias store against its plane followed by CombineSplit
// with the bias, bit for bit, over the wide and narrow kernels; LtGemm::RunWhole (the product
// plus its bias straight into the output where the plan has one k-slice) against Run followed by
// CombineSplit over the stream kernels' and cuBLASLt's timed and untimed plans. Tagged "gpu"
// (the stream kernels need sm_90a).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm_lt.h"
#include "kernels/launchers.h"
#include "tests/gpu/device_buffer.h"

namespace xlserve {
namespace {

using kernels::StreamGemmConfig;
using testing::DeviceBuffer;

// Device copies of random bf16 x [cols, k], w [n, k] and an fp32 bias [n].
struct Operands {
  Operands(int n, int k, int cols, std::mt19937& rng) : x(size_t(cols) * k), w(size_t(n) * k), bias(n) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<__nv_bfloat16> hx(size_t(cols) * k), hw(size_t(n) * k);
    std::vector<float> hb(n);
    for (auto& v : hx) v = __float2bfloat16(u(rng));
    for (auto& v : hw) v = __float2bfloat16(u(rng));
    for (auto& v : hb) v = u(rng);
    REQUIRE(cudaMemcpy(x.data, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemcpy(w.data, hw.data(), hw.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemcpy(bias.data, hb.data(), hb.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  }
  DeviceBuffer<__nv_bfloat16> x, w;
  DeviceBuffer<float> bias;
};

// The `count` fp32 values at a and b on the host.
void Fetch(const float* a, const float* b, size_t count, std::vector<float>* ha, std::vector<float>* hb) {
  ha->resize(count);
  hb->resize(count);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(cudaMemcpy(ha->data(), a, count * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(hb->data(), b, count * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
}

// How many of `count` fp32 values at a and b differ in their bits.
int BitsDiffer(const float* a, const float* b, size_t count) {
  std::vector<float> ha, hb;
  Fetch(a, b, count, &ha, &hb);
  int differ = 0;
  for (size_t i = 0; i < count; ++i) differ += std::memcmp(&ha[i], &hb[i], 4) != 0;
  return differ;
}

// The largest |a - b| over `count` fp32 values.
double MaxAbsDiff(const float* a, const float* b, size_t count) {
  std::vector<float> ha, hb;
  Fetch(a, b, count, &ha, &hb);
  double worst = 0;
  for (size_t i = 0; i < count; ++i) worst = std::max(worst, std::fabs(double(ha[i]) - hb[i]));
  return worst;
}

// StreamGemm(config) with a bias against its plane followed by CombineSplit with that bias.
void CheckStreamBias(int n, int k, int cols, StreamGemmConfig config, std::mt19937& rng) {
  CAPTURE(n, k, cols, config.width, config.narrow, config.stages);
  const Operands op(n, k, cols, rng);
  const size_t count = size_t(cols) * n;
  DeviceBuffer<float> whole(count), plane(count), ref(count);
  REQUIRE(kernels::StreamGemm(config, op.w.data, n, k, op.x.data, cols, op.bias.data, whole.data, nullptr) ==
          cudaSuccess);
  REQUIRE(kernels::StreamGemm(config, op.w.data, n, k, op.x.data, cols, nullptr, plane.data, nullptr) == cudaSuccess);
  REQUIRE(kernels::CombineSplit({plane.data, 1}, op.bias.data, cols, n, false, ref.data, nullptr) == cudaSuccess);
  CHECK(BitsDiffer(whole.data, ref.data, count) == 0);
}

TEST_CASE("the stream GEMM's bias store gives the bits of its plane followed by CombineSplit", "[whole]") {
  REQUIRE(kernels::StreamGemmAvailable());
  std::mt19937 rng(23);
  for (int cols : {1, 65, 192}) {
    for (int width : kernels::kStreamGemmWidths) CheckStreamBias(2 * width + 10, 1032, cols, {width, 1}, rng);
  }
  for (int cols : {1, 9, 32}) {
    for (const kernels::StreamGemmTiling& t : kernels::kStreamGemmNarrowTilings) {
      CheckStreamBias(2 * t.width + 10, 1032, cols, {t.width, 1, true, t.stages}, rng);
    }
  }
  // A bias needs the one plane it is added to.
  DeviceBuffer<__nv_bfloat16> x(64 * 128), w(256 * 128);
  DeviceBuffer<float> b(256), out(2 * 64 * 256);
  CHECK(kernels::StreamGemm({96, 2}, w.data, 256, 128, x.data, 64, b.data, out.data, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(kernels::StreamGemm({64, 2, true, 8}, w.data, 256, 128, x.data, 8, b.data, out.data, nullptr) ==
        cudaErrorInvalidValue);
}

// RunWhole against Run followed by CombineSplit, with and without a bias: the same product to
// fp32 accumulation (bit for bit where the same algorithm runs; a heuristic plan may take
// another one for the bias epilogue). Returns whether every call wrote the output directly.
bool CheckRunWhole(kernels::LtGemm* lt, int n, int k, int cols, std::mt19937& rng) {
  CAPTURE(n, k, cols);
  const Operands op(n, k, cols, rng);
  const size_t count = size_t(cols) * n, planes = count * lt->MaxKSlices(cols);
  DeviceBuffer<float> y(count), t(planes), t_ref(planes), ref(count);
  bool direct = true;
  for (const float* bias : {static_cast<const float*>(nullptr), static_cast<const float*>(op.bias.data)}) {
    CAPTURE(bias != nullptr);
    auto slices = lt->RunWhole(op.w.data, n, k, op.x.data, cols, bias, y.data, t.data, nullptr);
    REQUIRE(slices.ok());
    if (*slices > 0) {  // the caller's pass
      REQUIRE(kernels::CombineSplit({t.data, *slices}, bias, cols, n, false, y.data, nullptr) == cudaSuccess);
    }
    direct = direct && *slices == 0;
    auto ref_slices = lt->Run(op.w.data, n, k, op.x.data, cols, t_ref.data, nullptr);
    REQUIRE(ref_slices.ok());
    REQUIRE(kernels::CombineSplit({t_ref.data, *ref_slices}, bias, cols, n, false, ref.data, nullptr) ==
            cudaSuccess);
    // The terms' magnitudes sum to about k / 4 (x and w uniform in [-1, 1]); fp32 sums in any
    // order stay within a few ulps of that.
    CHECK(MaxAbsDiff(y.data, ref.data, count) <= 1e-6 * k);
  }
  return direct;
}

TEST_CASE("a GEMM run whole gives the bits of its planes followed by CombineSplit", "[whole]") {
  auto lt = kernels::LtGemm::Create();
  REQUIRE(lt.ok());
  std::mt19937 rng(29);
  // Timed shapes (the stream kernels' rows where they run, then cuBLASLt's), and an untimed one
  // (past the timed rows: the heuristic's first algorithm, one k-slice).
  // The 7B shape's q|k|v|o|gates projection over a long prompt's rows last.
  const int shapes[][3] = {
      {1000, 1024, 4}, {1000, 1024, 100}, {1000, 1024, 300}, {1000, 1024, 600}, {12304, 4096, 2048}};
  for (const auto& [n, k, cols] : shapes) {
    const bool direct = CheckRunWhole(lt->get(), n, k, cols, rng);
    bool one_slice = true;
    for (const GemmChoice& c : (*lt)->choices()) {
      if (c.n == n && c.rows == cols) one_slice = c.chosen.find(", 1 k-slice") != std::string::npos;
    }
    // A one-slice plan is written whole whichever kernel runs it, bias or none.
    CAPTURE(cols, one_slice);
    CHECK(direct == one_slice);
  }
}

}  // namespace
}  // namespace xlserve
