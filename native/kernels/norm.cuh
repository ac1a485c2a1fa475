// RMSNorm, the fused residual add + RMSNorm and LayerNorm over the last dimension of f32 device rows, weights and
// biases of any float dtype (host entry points; kernels in norm.cu). Semantics as native/cpu/norm.h. RMSNorm and
// LayerNorm also come with the result stored in a chosen dtype ot (f32, f16 or bf16: the round-to-nearest-even of
// the f32 result), which the linear ops use to write a tensor-core GEMM's input in one pass.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

// out = (x * (1 / sqrt(mean(x^2) + eps))) * w. out may be x.
void rms_norm(CudaBackend& be, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t rows, int64_t n,
              float eps);
// rms_norm stored as ot; out must not overlap x unless ot is f32 (then out may be x).
void rms_norm(CudaBackend& be, void* out, qwen3vl_dtype ot, const float* x, const void* w, qwen3vl_dtype wt,
              int64_t rows, int64_t n, float eps);
// residual += x; out = rms_norm(residual) * w. out may be x (not residual).
void add_rms_norm(CudaBackend& be, float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt,
                  int64_t rows, int64_t n, float eps);
// out = (x - mean) * (1 / sqrt(var + eps)) * w + b, biased variance. out may be x.
void layer_norm(CudaBackend& be, float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b,
                qwen3vl_dtype bt, int64_t rows, int64_t n, float eps);
// layer_norm stored as ot; out must not overlap x unless ot is f32 (then out may be x).
void layer_norm(CudaBackend& be, void* out, qwen3vl_dtype ot, const float* x, const void* w, qwen3vl_dtype wt,
                const void* b, qwen3vl_dtype bt, int64_t rows, int64_t n, float eps);

}  // namespace cuda
}  // namespace qwen3vl
