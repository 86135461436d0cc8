#include "engine/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/parallel/communicator.h"
#include "engine/parallel/tensor_parallel_plan.h"
#include "engine/util/dtype.h"

namespace xlserve::cpu {
namespace {

// Eight independent partial sums let the compiler vectorise without -ffast-math.
float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Dot over `parts` contiguous parts of the range, the parts' sums added pairwise.
float SplitDot(const float* a, const float* b, int64_t n, int parts) {
  if (parts == 1) return Dot(a, b, n);
  const int64_t len = n / parts;
  float sums[TensorParallelPlan::kMaxRanks];
  for (int p = 0; p < parts; ++p) sums[p] = Dot(a + p * len, b + p * len, len);
  return PairwiseSum(std::span<float>(sums, parts));
}

uint16_t Load16(const void* base, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const char*>(base) + i * 2, 2);
  return v;
}

float ElementAt(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: {
      // Other writers may leave F32 data unaligned inside the file: load bytewise.
      float v;
      std::memcpy(&v, static_cast<const char*>(t.data) + i * 4, 4);
      return v;
    }
    case DType::kBF16: return BF16ToFloat(Load16(t.data, i));
    case DType::kF16: return F16ToFloat(Load16(t.data, i));
  }
  return 0.0f;
}

void WidenRange(const TensorView& t, int64_t begin, int64_t count, float* out) {
  if (t.dtype == DType::kF32) {
    std::memcpy(out, static_cast<const char*>(t.data) + begin * 4, count * 4);
    return;
  }
  for (int64_t i = 0; i < count; ++i) out[i] = ElementAt(t, begin + i);
}

}  // namespace

void ReadRow(const TensorView& table, int64_t row, float* out) {
  WidenRange(table, row * table.cols(), table.cols(), out);
}

void Linear(ThreadPool& pool, const float* x, int64_t rows, int64_t x_stride, const TensorView& w,
            const TensorView& bias, float* y, int64_t y_stride, Precision precision, int reduce_parts) {
  const int64_t n_out = w.rows();
  const int64_t k_in = w.cols();
  std::vector<float> rounded;
  if (precision == Precision::kBf16 && w.dtype == DType::kBF16) {
    rounded.resize(rows * k_in);
    for (int64_t m = 0; m < rows; ++m) {
      for (int64_t k = 0; k < k_in; ++k) rounded[m * k_in + k] = BF16ToFloat(FloatToBF16(x[m * x_stride + k]));
    }
    x = rounded.data();
    x_stride = k_in;
  }
  // Parallel over output features: each weight row is widened once and used for every row
  // of x, so weight traffic stays one pass whatever the number of rows.
  // A task gets at least ~64k multiply-adds, so tiny layers do not pay for thread handoffs.
  const int64_t grain = std::max<int64_t>(8, (int64_t{1} << 16) / std::max<int64_t>(1, k_in * rows));
  pool.ParallelFor(n_out, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> wrow(k_in);
    for (int64_t n = begin; n < end; ++n) {
      WidenRange(w, n * k_in, k_in, wrow.data());
      const float b = bias.present() ? ElementAt(bias, n) : 0.0f;
      for (int64_t m = 0; m < rows; ++m) {
        y[m * y_stride + n] = SplitDot(x + m * x_stride, wrow.data(), k_in, reduce_parts) + b;
      }
    }
  });
}

void AddBias(float* y, int64_t rows, int64_t y_stride, const TensorView& bias) {
  if (!bias.present()) return;
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t n = 0; n < bias.rows(); ++n) y[m * y_stride + n] += ElementAt(bias, n);
  }
}

void RmsNorm(const float* x, int64_t rows, int64_t d, const TensorView& w, const TensorView& b,
             double eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = out + r * d;
    double sum_sq = 0;
    for (int64_t i = 0; i < d; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / d + eps));
    for (int64_t i = 0; i < d; ++i) {
      float v = xr[i] * scale * ElementAt(w, i);
      if (b.present()) v += ElementAt(b, i);
      yr[i] = v;
    }
  }
}

void MultiHeadLayerNorm(float* x, int64_t rows, int num_heads, int head_dim, const TensorView& w,
                        const TensorView& b, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * static_cast<int64_t>(num_heads) * head_dim;
    for (int h = 0; h < num_heads; ++h) {
      float* g = row + static_cast<int64_t>(h) * head_dim;
      double mean = 0;
      for (int i = 0; i < head_dim; ++i) mean += g[i];
      mean /= head_dim;
      double var = 0;
      for (int i = 0; i < head_dim; ++i) var += (g[i] - mean) * (g[i] - mean);
      var /= head_dim;
      const double inv = 1.0 / std::sqrt(var + eps);
      for (int i = 0; i < head_dim; ++i) g[i] = static_cast<float>((g[i] - mean) * inv);
    }
    for (int64_t i = 0; i < static_cast<int64_t>(num_heads) * head_dim; ++i) {
      row[i] *= ElementAt(w, i);
      if (b.present()) row[i] += ElementAt(b, i);
    }
  }
}

void SoftCap(std::span<float> x, std::optional<double> cap) {
  if (!cap) return;
  const float c = static_cast<float>(*cap);
  for (float& v : x) v = c * std::tanh(v / c);
}

float LogSigmoid(float x) {
  // Stable for both tails: min(x, 0) - log1p(exp(-|x|)).
  return std::min(x, 0.0f) - std::log1p(std::exp(-std::fabs(x)));
}

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

float Silu(float x) { return x * Sigmoid(x); }

}  // namespace xlserve::cpu
