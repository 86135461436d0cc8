// RMSNorm and the per-head LayerNorm with the output gate.
//
// RmsNorm:      out[r, c] = x[r, c] / sqrt(mean_c x[r, :]^2 + eps) * w[c] (+ b[c])
//               grid (rows), block 256; the sum of squares in fp32 over a block reduction.
// HeadNormGate: for each row r and head h, over its head_dim values g:
//               g <- (g - mean g) / sqrt(var g + eps)   (biased variance, fp32)
//               g <- g * w[h*hd + c] (+ b[...]);  g <- g * sigmoid(o[r, h*hd + c])
//               grid (rows, heads), block 128 over c. Matches transformers' xLSTM
//               multihead_norm followed by sigmoid(ogate) * h.
// x, h, out: fp32 [rows, width] row-major; w, b fp32; both may also write the split pair of
// their output (launchers.h) for a bf16 GEMM that reads it next.
#include "kernels/device_common.cuh"
#include "kernels/launchers.h"

namespace xlserve::kernels {
namespace {

__global__ void RmsNormKernel(const float* x, const float* w, const float* b, int d, int64_t count, float eps,
                              float* out, void* split) {
  __shared__ float scratch[32];
  const float* xr = x + int64_t(blockIdx.x) * d;
  float sq = 0;
  for (int c = threadIdx.x; c < d; c += blockDim.x) sq += xr[c] * xr[c];
  const float scale = rsqrtf(BlockSum(sq, scratch) / d + eps);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float v = xr[c] * scale * w[c];
    if (b) v += b[c];
    StoreActivation(out, split, count, int64_t(blockIdx.x) * d + c, v);
  }
}

__global__ void HeadNormGateKernel(const float* h, const float* o, int64_t o_stride, const float* w, const float* b,
                                   int heads, int head_dim, int64_t count, float eps, float* out, void* split) {
  __shared__ float scratch[32];
  const int width = heads * head_dim;
  const int64_t base = int64_t(blockIdx.x) * width + int64_t(blockIdx.y) * head_dim;
  const float* orow = o + int64_t(blockIdx.x) * o_stride + int64_t(blockIdx.y) * head_dim;
  float sum = 0;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) sum += h[base + c];
  const float mean = BlockSum(sum, scratch) / head_dim;
  float var = 0;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) var += (h[base + c] - mean) * (h[base + c] - mean);
  const float inv = rsqrtf(BlockSum(var, scratch) / head_dim + eps);
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    const int wi = blockIdx.y * head_dim + c;
    float v = (h[base + c] - mean) * inv * w[wi];
    if (b) v += b[wi];
    StoreActivation(out, split, count, base + c, v / (1.0f + expf(-orow[c])));
  }
}

}  // namespace

cudaError_t RmsNorm(const float* x, const float* w, const float* b, int rows, int d, float eps, float* out,
                    void* split, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RmsNormKernel<<<rows, 256, 0, stream>>>(x, w, b, d, int64_t(rows) * d, eps, out, split);
  return cudaGetLastError();
}

cudaError_t HeadNormGate(const float* h, const float* o, int64_t o_stride, const float* w, const float* b, int rows,
                         int heads, int head_dim, float eps, float* out, void* split, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  HeadNormGateKernel<<<dim3(rows, heads), 128, 0, stream>>>(h, o, o_stride, w, b, heads, head_dim,
                                                            int64_t(rows) * heads * head_dim, eps, out, split);
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
