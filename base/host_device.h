// XLSERVE_HOST_DEVICE marks an inline function that nvcc compiles for the GPU as well and the
// host compiler as plain C++: arithmetic that a CPU path (or a CPU test) and a kernel share.
#pragma once

#if defined(__CUDACC__)
#define XLSERVE_HOST_DEVICE __host__ __device__
#else
#define XLSERVE_HOST_DEVICE
#endif
