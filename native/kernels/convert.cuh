// Element conversion between f32, f16 and bf16 in device memory (round-to-nearest-even, as the CPU reference).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

// Throws INVALID_ARGUMENT for an I32 <-> float pair; launches on stream.
void convert(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count,
             cudaStream_t stream);

}  // namespace cuda
}  // namespace qwen3vl
