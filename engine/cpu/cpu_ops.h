// Dense fp32 building blocks of the CPU reference backend.
//
// Activations are fp32 row-major [rows, features]. Weights are TensorViews straight from the
// checkpoint (F32, BF16 or F16, row-major [out, in], nn.Linear's layout); they are widened to
// fp32 one row at a time, so the maths is fp32 whatever the storage type.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "engine/backend.h"
#include "engine/model/model_weights.h"
#include "engine/util/thread_pool.h"

namespace xlserve::cpu {

// y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) for m < rows; w: [n_out, k_in].
// x has row stride `x_stride`, y has row stride `y_stride` (both in floats). With bf16 weights
// and Precision::kBf16, x is rounded to bf16 first (the GPU's bf16 precision; sums stay fp32).
// `reduce_parts` (a power of two dividing k_in) splits each sum into that many contiguous
// parts added pairwise, the order a tensor-parallel split reproduces (tensor_parallel_plan.h).
void Linear(ThreadPool& pool, const float* x, int64_t rows, int64_t x_stride, const TensorView& w,
            const TensorView& bias, float* y, int64_t y_stride, Precision precision, int reduce_parts = 1);

// y[m, n] += bias[n] for m < rows (y with row stride `y_stride`); nothing without a bias.
void AddBias(float* y, int64_t rows, int64_t y_stride, const TensorView& bias);

// Copies row `row` of `table` ([n, width]) into `out` as fp32.
void ReadRow(const TensorView& table, int64_t row, float* out);

// x[r] <- x[r] / sqrt(mean(x[r]^2) + eps) * w (+ b), in place, for each of `rows` rows of width d.
void RmsNorm(const float* x, int64_t rows, int64_t d, const TensorView& w, const TensorView& b,
             double eps, float* out);

// Per-head LayerNorm: each `head_dim` group of a row is centred and scaled by
// 1/sqrt(var + eps) (biased variance), then the whole row is multiplied by w (+ b).
void MultiHeadLayerNorm(float* x, int64_t rows, int num_heads, int head_dim, const TensorView& w,
                        const TensorView& b, double eps);

// cap * tanh(x / cap) in place; no-op without a cap.
void SoftCap(std::span<float> x, std::optional<double> cap);

float LogSigmoid(float x);
float Sigmoid(float x);
float Silu(float x);

}  // namespace xlserve::cpu
