// MlstmFreshChunk: the launch of mlstm_fresh_chunk.cuh's blocks on their own (the maths, tiles
// and shared memory are there). In bf16 pairs the update tiles are wide (kWideUpCols: one round
// of blocks for a 7B prompt); 3xTF32 keeps kUpCols, as its wide tiles spill registers (128 a
// thread at two blocks an SM). Grid: FreshChunkBlocks(p, max_tokens, UpWidth<kP>) blocks in x,
// kFreshThreads threads, FreshChunkSmemBytes() of dynamic shared memory.
#include <cuda_bf16.h>

#include "kernels/dependent_launch.cuh"
#include "kernels/mlstm_fresh_chunk.cuh"

namespace xlserve::kernels {
namespace {

template <Products kP>
constexpr int UpWidth = kP == Products::kBf16Pair ? fresh_chunk::kWideUpCols : fresh_chunk::kUpCols;

template <typename T, Products kP>
__global__ void __launch_bounds__(kFreshThreads, 2) MlstmFreshChunkKernel(MlstmParams p, int max_tokens) {
  AllowDependentLaunch();
  WaitForPriorKernels();
  extern __shared__ float4 fresh_smem[];
  FreshChunkBlock<T, kP, UpWidth<kP>>(p, max_tokens, blockIdx.x, reinterpret_cast<float*>(fresh_smem));
}

template <typename T, Products kP>
cudaError_t Launch(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  const cudaError_t e = AllowDynamicSmem<MlstmFreshChunkKernel<T, kP>>(FreshChunkSmemBytes());
  if (e != cudaSuccess) return e;
  LaunchDependent(MlstmFreshChunkKernel<T, kP>, dim3(FreshChunkBlocks(p, max_tokens, UpWidth<kP>)), kFreshThreads,
                  FreshChunkSmemBytes(), stream, p, max_tokens);
  return cudaGetLastError();
}

}  // namespace

bool MlstmFreshChunkApplies(const MlstmParams& p, int max_tokens) {
  return p.all_fresh && max_tokens <= kChunkTokens && MlstmChunkwiseSupports(p.dqk);
}

cudaError_t MlstmFreshChunk(const MlstmParams& p, int max_tokens, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  if (!MlstmFreshChunkApplies(p, max_tokens) || p.h == nullptr || p.seq_defer != nullptr) return cudaErrorInvalidValue;
  return LaunchByStateAndProducts(p, [&](auto state, auto products) {
    return Launch<decltype(state), decltype(products)::value>(p, max_tokens, stream);
  });
}

}  // namespace xlserve::kernels
