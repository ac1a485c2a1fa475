// Built with AVX2 + FMA + F16C (see native/CMakeLists.txt); called only after CPU detection. Sums of squares go
// through four 8-lane f32 accumulators (32 partial sums), then one horizontal add; the tail is scalar.
#include <cmath>

#include "nn_common.h"
#include "norm.h"
#include "simd_avx2.h"

namespace qwen3vl {
namespace cpu {

static float sum_squares(const float* x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        const __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
        a2 = _mm256_fmadd_ps(v2, v2, a2);
        a3 = _mm256_fmadd_ps(v3, v3, a3);
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(v, v, a0);
    }
    float s = avx2::hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) s += x[i] * x[i];
    return s;
}

static void scale_by_weight(float* out, const float* x, float r, const void* w, qwen3vl_dtype wt, int64_t n) {
    const __m256 rv = _mm256_set1_ps(r);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv),
                                                avx2::load8(w, wt, static_cast<size_t>(i))));
    for (; i < n; ++i) out[i] = (x[i] * r) * load_f32(w, wt, static_cast<size_t>(i));
}

void rms_norm_row_avx2(float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n, float eps) {
    const float var = sum_squares(x, n) / static_cast<float>(n);
    scale_by_weight(out, x, 1.0f / std::sqrt(var + eps), w, wt, n);
}

void add_rms_norm_row_avx2(float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t n,
                           float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 v0 = _mm256_add_ps(_mm256_loadu_ps(residual + i), _mm256_loadu_ps(x + i));
        const __m256 v1 = _mm256_add_ps(_mm256_loadu_ps(residual + i + 8), _mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(residual + i, v0);
        _mm256_storeu_ps(residual + i + 8, v1);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    float s = avx2::hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) {
        residual[i] += x[i];
        s += residual[i] * residual[i];
    }
    const float var = s / static_cast<float>(n);
    scale_by_weight(out, residual, 1.0f / std::sqrt(var + eps), w, wt, n);
}

void layer_norm_row_avx2(float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b, qwen3vl_dtype bt,
                         int64_t n, float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    }
    float s = avx2::hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) s += x[i];
    const float mean = s / static_cast<float>(n);
    const __m256 mv = _mm256_set1_ps(mean);
    a0 = _mm256_setzero_ps();
    a1 = _mm256_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
        const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv);
        a0 = _mm256_fmadd_ps(d0, d0, a0);
        a1 = _mm256_fmadd_ps(d1, d1, a1);
    }
    float ss = avx2::hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) ss += (x[i] - mean) * (x[i] - mean);
    const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
    const __m256 rv = _mm256_set1_ps(rstd);
    for (i = 0; i + 8 <= n; i += 8) {
        const size_t u = static_cast<size_t>(i);
        const __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv), avx2::load8(w, wt, u));
        _mm256_storeu_ps(out + i, _mm256_add_ps(y, avx2::load8(b, bt, u)));
    }
    for (; i < n; ++i) {
        const size_t u = static_cast<size_t>(i);
        out[i] = (x[i] - mean) * rstd * load_f32(w, wt, u) + load_f32(b, bt, u);
    }
}

}  // namespace cpu
}  // namespace qwen3vl
