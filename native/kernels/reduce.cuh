// Row reductions over the last dimension of f32 device rows: softmax and argmax (host entry points; kernels in
// reduce.cu). Semantics as native/cpu/reduce.h.
#pragma once

#include <cstdint>

#include "cuda_backend.h"

namespace qwen3vl {
namespace cuda {

// out = exp(x - max) / sum(exp(x - max)) per row of n; out may be x.
void softmax(CudaBackend& be, float* out, const float* x, int64_t rows, int64_t n);
// out[r] = first index of the largest element of row r (a NaN counts as the largest, as torch.argmax).
void argmax(CudaBackend& be, int32_t* out, const float* x, int64_t rows, int64_t n);

}  // namespace cuda
}  // namespace qwen3vl
