// RMSNorm (Qwen3VLTextRMSNorm), the fused residual add + RMSNorm, and LayerNorm (biased variance) over the last
// dimension, in f32 with weights and biases of any float dtype read as f32. The row functions are also used by the
// QK-norm of the rotary prologue. _scalar is the reference; _avx2 (norm_avx2.cpp) sums in 8-lane f32 accumulators.
#pragma once

#include <cstdint>

#include "cpu_features.h"
#include "qwen3vl.h"
#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

// out = (x * (1 / sqrt(mean(x^2) + eps))) * w, rounded in that order as transformers does. out may be x.
void rms_norm_row_scalar(float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n, float eps);
void rms_norm_row_avx2(float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n, float eps);
// residual += x; out = rms_norm(residual) * w. out may be x (not residual).
void add_rms_norm_row_scalar(float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n,
                             float eps);
void add_rms_norm_row_avx2(float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n,
                           float eps);
// out = (x - mean) * (1 / sqrt(var + eps)) * w + b with the biased variance. out may be x.
void layer_norm_row_scalar(float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b,
                           qwen3vl_dtype bt, int64_t n, float eps);
void layer_norm_row_avx2(float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b, qwen3vl_dtype bt,
                         int64_t n, float eps);

void rms_norm(ThreadPool& pool, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t rows, int64_t n,
              float eps, CpuKernels k = cpu_kernels());
void add_rms_norm(ThreadPool& pool, float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt,
                  int64_t rows, int64_t n, float eps, CpuKernels k = cpu_kernels());
void layer_norm(ThreadPool& pool, float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b,
                qwen3vl_dtype bt, int64_t rows, int64_t n, float eps, CpuKernels k = cpu_kernels());

}  // namespace cpu
}  // namespace qwen3vl
