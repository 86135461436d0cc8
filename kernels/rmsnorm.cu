// RMSNorm and the per-head LayerNorm with the output gate.
//
// RmsNorm:      out[r, c] = x[r, c] / sqrt(mean_c x[r, :]^2 + eps) * w[c] (+ b[c])
//               grid (rows), block 256; the sum of squares in fp32 over a block reduction.
// HeadNormGate: for each row r and head h, over its head_dim values g:
//               g <- (g - mean g) / sqrt(var g + eps)   (biased variance, fp32)
//               g <- g * w[h*hd + c] (+ b[...]);  g <- g * sigmoid(o[r, h*hd + c])
//               grid (rows, heads), block 128 over c. Matches transformers' xLSTM
//               multihead_norm followed by sigmoid(ogate) * h.
#include "kernels/launchers.h"
#include "kernels/weight_load.cuh"

namespace xlserve::kernels {
namespace {

__global__ void RmsNormKernel(const float* x, const void* w, const void* b, WeightType type, int d, float eps,
                              float* out) {
  __shared__ float scratch[32];
  const float* xr = x + int64_t(blockIdx.x) * d;
  float sq = 0;
  for (int c = threadIdx.x; c < d; c += blockDim.x) sq += xr[c] * xr[c];
  const float scale = rsqrtf(BlockSum(sq, scratch) / d + eps);
  float* yr = out + int64_t(blockIdx.x) * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float v = xr[c] * scale * LoadWeight(w, type, c);
    if (b) v += LoadWeight(b, type, c);
    yr[c] = v;
  }
}

__global__ void HeadNormGateKernel(float* h, const float* o, const void* w, const void* b, WeightType type,
                                   int heads, int head_dim, float eps) {
  __shared__ float scratch[32];
  const int64_t base = (int64_t(blockIdx.x) * heads + blockIdx.y) * head_dim;
  float sum = 0;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) sum += h[base + c];
  const float mean = BlockSum(sum, scratch) / head_dim;
  float var = 0;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) var += (h[base + c] - mean) * (h[base + c] - mean);
  const float inv = rsqrtf(BlockSum(var, scratch) / head_dim + eps);
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    const int64_t wi = int64_t(blockIdx.y) * head_dim + c;
    float v = (h[base + c] - mean) * inv * LoadWeight(w, type, wi);
    if (b) v += LoadWeight(b, type, wi);
    h[base + c] = v / (1.0f + expf(-o[base + c]));
  }
}

}  // namespace

cudaError_t RmsNorm(const float* x, const void* w, const void* b, WeightType type, int rows, int d, float eps,
                    float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RmsNormKernel<<<rows, 256, 0, stream>>>(x, w, b, type, d, eps, out);
  return cudaGetLastError();
}

cudaError_t HeadNormGate(float* h, const float* o, const void* w, const void* b, WeightType type, int rows,
                         int heads, int head_dim, float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  HeadNormGateKernel<<<dim3(rows, heads), 128, 0, stream>>>(h, o, w, b, type, heads, head_dim, eps);
  return cudaGetLastError();
}

}  // namespace xlserve::kernels
