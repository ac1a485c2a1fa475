// The cuBLASLt wrapper of the linear ops for M > kGemvMaxRows (linear.cuh): one product d = x w^T (+ c) with an
// optional bias / tanh-GELU epilogue, its matrix layouts and the heuristic's algorithm cached per shape (gemm_lt.cu).
// Row-major out[M, N] = x W^T is the column-major product out^T[N, M] = W^T[N, K] x^T[K, M] ("TN": W as a
// column-major K x N matrix, transposed, times x as K x M), the layout the tensor-core kernels prefer. Internal to
// native/kernels; capture-safe (the workspace comes from the backend, nothing synchronises).
#pragma once

#include <cublasLt.h>

#include <cstdint>

#include "cuda_backend.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

inline cudaDataType_t cuda_type(qwen3vl_dtype t) {
    return t == QWEN3VL_DTYPE_BF16 ? CUDA_R_16BF : t == QWEN3VL_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

// One product d = x w^T (+ c) (+ bias), then GELU (tanh form) when gelu: d[m * ldd + j] for m < M, j < n, with w [n, K]
// and x [M, K] of type ab, fp32 accumulation, c (NULL, or d itself or separate memory) and d of type dt (f32, or ab),
// bias [n] of type dt (cuBLASLt's rule for its epilogue: bias elements have D's type) or NULL.
struct LtProduct {
    void* d = nullptr;
    cudaDataType_t dt = CUDA_R_32F;
    int64_t ldd = 0;
    const void* c = nullptr;
    const void* w = nullptr;
    const void* x = nullptr;
    cudaDataType_t ab = CUDA_R_32F;
    int64_t n = 0, M = 0, K = 0;
    const void* bias = nullptr;
    bool gelu = false;
};

// Runs one product (LtProduct). False when cuBLASLt has no algorithm for this combination (nothing was queued; the
// caller falls back).
bool lt_matmul(CudaBackend& be, const LtProduct& p);

// Whether products with weights of dtype wt run on tensor cores (x rounded to wt): bf16 on sm_80+, f16 on sm_70+,
// unless the backend was asked for fp32 math.
bool tensor_cores(const CudaBackend& be, qwen3vl_dtype wt);

}  // namespace cuda
}  // namespace qwen3vl
