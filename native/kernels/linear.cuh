// Linear layers on device memory (host entry points; kernels in linear.cu): out[M, N] = x[M, K] * W[N, K]^T
// (+ bias) and out = silu(x Wg^T) * (x Wu^T). x and out f32; W and bias f32, f16 or bf16. Semantics as
// native/cpu/gemm.h.
//
// Two regimes, chosen by M:
//  - M <= kGemvMaxRows: memory-bound GEMV in fp32, weights streamed once for all rows of x (swiglu fused).
//  - otherwise cuBLASLt. With bf16 weights on sm_80+ or f16 weights on sm_70+, x is rounded to the weight dtype
//    and the tensor cores multiply with fp32 accumulation and fp32 output (NMSE ~1e-6 against the fp32 CPU path
//    for bf16, ~1e-7 for f16: the rounding of x). Elsewhere (f32 weights, older GPUs) an fp32 GEMM, with 16-bit
//    weights widened to f32 in bounded chunks of rows.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

struct Weight {
    const void* data = nullptr;
    qwen3vl_dtype dtype = QWEN3VL_DTYPE_F32;
};

constexpr int64_t kGemvMaxRows = 16;

// out must not overlap x, w or bias; bias.data may be NULL.
void linear(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight bias);
void linear_swiglu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight gate,
                   Weight up);

}  // namespace cuda
}  // namespace qwen3vl
