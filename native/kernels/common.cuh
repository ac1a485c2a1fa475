// Shared by every CUDA op: error checking that turns CUDA failures into qwen3vl::Error, launch helpers.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "error.h"

namespace qwen3vl {
namespace cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
    cudaGetLastError();  // reset the last (non-sticky) error so later calls on this thread start clean
    const qwen3vl_status status =
        err == cudaErrorMemoryAllocation ? QWEN3VL_STATUS_OUT_OF_MEMORY : QWEN3VL_STATUS_DEVICE_ERROR;
    fail(status, std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") at " +
                     file + ":" + std::to_string(line));
}

#define QWEN3VL_CUDA_CHECK(call)                                                                      \
    do {                                                                                               \
        cudaError_t qwen3vl_err_ = (call);                                                             \
        if (qwen3vl_err_ != cudaSuccess) ::qwen3vl::cuda::throw_cuda_error(qwen3vl_err_, #call, __FILE__, __LINE__); \
    } while (0)

// Blocks for a 1-D grid-stride launch over n elements, capped so a launch never exceeds the grid limit.
inline unsigned grid_for(size_t n, unsigned block) {
    size_t blocks = (n + block - 1) / block;
    if (blocks < 1) blocks = 1;
    if (blocks > 65535u * 32u) blocks = 65535u * 32u;
    return static_cast<unsigned>(blocks);
}

}  // namespace cuda
}  // namespace qwen3vl
