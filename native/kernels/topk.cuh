// top_k over the last dimension of f32 device rows (host entry point; kernels in topk.cu). Semantics as
// native/cpu/reduce.h's top_k.
#pragma once

#include <cstdint>

#include "cuda_backend.h"

namespace qwen3vl {
namespace cuda {

// values[r, j], indices[r, j] for j < k = the k largest elements of row r of n and their indices, descending (ties:
// the lower index first; a NaN above everything; -0 equal to +0). 1 <= k <= min(n, QWEN3VL_TOP_K_MAX). Queues its
// kernels without a host synchronisation (scratch from the pool), so it may be captured into a graph.
void top_k(CudaBackend& be, float* values, int32_t* indices, const float* x, int64_t rows, int64_t n, int64_t k);

}  // namespace cuda
}  // namespace qwen3vl
