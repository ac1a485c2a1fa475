#include "norm.h"

#include <cmath>

#include "nn_common.h"

namespace qwen3vl {
namespace cpu {

// The scalar reference sums in double: one rounding instead of n, so it is at least as close to the exact
// statistics as PyTorch's cascaded f32 sums.
static float inv_rms(const float* x, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float var = static_cast<float>(ss / static_cast<double>(n));
    return 1.0f / std::sqrt(var + eps);
}

void rms_norm_row_scalar(float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n, float eps) {
    const float r = inv_rms(x, n, eps);
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * r) * load_f32(w, wt, static_cast<size_t>(i));
}

void add_rms_norm_row_scalar(float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n,
                             float eps) {
    for (int64_t i = 0; i < n; ++i) residual[i] += x[i];
    rms_norm_row_scalar(out, residual, w, wt, n, eps);
}

void layer_norm_row_scalar(float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b,
                           qwen3vl_dtype bt, int64_t n, float eps) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += x[i];
    const float mean = static_cast<float>(s / static_cast<double>(n));
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(x[i]) - mean;
        ss += d * d;
    }
    const float rstd = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) {
        const size_t u = static_cast<size_t>(i);
        out[i] = (x[i] - mean) * rstd * load_f32(w, wt, u) + load_f32(b, bt, u);
    }
}

void rms_norm(ThreadPool& pool, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t rows, int64_t n,
              float eps, CpuKernels k) {
    const auto row = k == CpuKernels::Avx2 ? rms_norm_row_avx2 : rms_norm_row_scalar;
    parallel_rows(pool, rows, n, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) row(out + r * n, x + r * n, w, wt, n, eps);
    });
}

void add_rms_norm(ThreadPool& pool, float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt,
                  int64_t rows, int64_t n, float eps, CpuKernels k) {
    const auto row = k == CpuKernels::Avx2 ? add_rms_norm_row_avx2 : add_rms_norm_row_scalar;
    parallel_rows(pool, rows, 2 * n, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) row(residual + r * n, out + r * n, x + r * n, w, wt, n, eps);
    });
}

void layer_norm(ThreadPool& pool, float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b,
                qwen3vl_dtype bt, int64_t rows, int64_t n, float eps, CpuKernels k) {
    const auto row = k == CpuKernels::Avx2 ? layer_norm_row_avx2 : layer_norm_row_scalar;
    parallel_rows(pool, rows, 2 * n, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) row(out + r * n, x + r * n, w, wt, b, bt, n, eps);
    });
}

}  // namespace cpu
}  // namespace qwen3vl
