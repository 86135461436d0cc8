// Programmatic dependent launch (sm_90 and later): every kernel of the backend is launched so
// that the next kernel on the stream may start before it ends, which hides the launch, the
// block dispatch and the drain between two kernels (a decode step of the 7B shape at batch 1 is
// ~300 kernels of a few microseconds each besides the weight stream).
//
// The contract, kept by every kernel here: its first statements are
//   AllowDependentLaunch();   // all of this grid's blocks have started: the next may launch
//   [work that reads nothing an earlier kernel writes, e.g. weights]
//   WaitForPriorKernels();    // the previous kernel has finished and its writes are visible
// and nothing before the wait touches memory that an earlier kernel still running may write or
// read. A copy on the stream is a full barrier, so what was written before one may be read
// early: the mLSTM kernels load their rows' recurrent state before the wait, as only they write
// it within a pass and each pass begins with the upload of its index arrays. The wait
// comes before any early return, so a grid never finishes before the one it follows: the order
// of kernels on the stream stays transitive (kernel n+2 may read what kernel n wrote).
// Kernels that are not launched through LaunchDependent (cuBLAS) keep the stream's full order.
// On earlier GPUs both calls compile to nothing and launches carry no attribute.
#pragma once

#include <atomic>

#include <cuda_runtime.h>

#include <utility>

namespace xlserve::kernels {

__device__ __forceinline__ void AllowDependentLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void WaitForPriorKernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// An attribute of the current device, 0 when it cannot be asked.
inline int CurrentDeviceAttribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&value, attribute, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return value;
}

// Whether the current device takes programmatic dependent launches (compute capability 9.0+);
// asked once per process: the backend runs on one device.
inline bool DependentLaunchSupported() {
  static const bool supported = CurrentDeviceAttribute(cudaDevAttrComputeCapabilityMajor) >= 9;
  return supported;
}

// The current device's SM count (0 when it cannot be asked); once per process, as above.
inline int DeviceSmCount() {
  static const int sms = CurrentDeviceAttribute(cudaDevAttrMultiProcessorCount);
  return sms;
}

// kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization, its
// blocks grouped in thread-block clusters of `cluster` blocks (sm_90; 1 x 1 x 1: no clusters).
template <typename... Params, typename... Args>
cudaError_t LaunchDependentClusters(dim3 cluster, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                                    cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attributes[2] = {};
  unsigned count = 0;
  if (DependentLaunchSupported()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = cluster.x;
    attributes[count].val.clusterDim.y = cluster.y;
    attributes[count++].val.clusterDim.z = cluster.z;
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attributes;
  config.numAttrs = count;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization.
template <typename... Params, typename... Args>
cudaError_t LaunchDependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                            Args&&... args) {
  return LaunchDependentClusters(dim3(1, 1, 1), kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

// Lets kKernel launch with `bytes` of dynamic shared memory (past the 48 KB default needs an
// opt-in); the attribute is raised only when a launch needs more than any before it. The 48 KB
// count the kernel's static shared memory too: the verify's 8-row tiles in fp32 asked for exactly
// 48 KB of dynamic memory beside 2 KB of static, and their launch failed without the opt-in.
template <auto kKernel>
cudaError_t AllowDynamicSmem(size_t bytes) {
  constexpr size_t kDefault = 48 * 1024;
  static std::atomic<size_t> allowed{[] {
    cudaFuncAttributes a{};
    if (cudaFuncGetAttributes(&a, kKernel) != cudaSuccess) {
      cudaGetLastError();  // not left for a later launch's check to report; the opt-in below says
      return size_t{0};
    }
    return a.sharedSizeBytes < kDefault ? kDefault - a.sharedSizeBytes : size_t{0};
  }()};
  size_t now = allowed.load(std::memory_order_relaxed);
  if (bytes <= now) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  while (e == cudaSuccess && now < bytes && !allowed.compare_exchange_weak(now, bytes)) {
  }
  return e;
}

}  // namespace xlserve::kernels
