// Built with AVX2 + FMA + F16C (see native/CMakeLists.txt); called only after CPU detection.
// One query row against a key tile: dot products four keys at a time (one q load feeds four FMAs), exp of the
// scores eight at a time, and the P*V update with the accumulator held in registers 64 floats at a time.
#include <algorithm>
#include <cmath>

#include "attention.h"
#include "nn_common.h"
#include "simd_avx2.h"

namespace qwen3vl {
namespace cpu {

static inline float dot_tail(const float* a, const float* b, int64_t d0, int64_t D) {
    float s = 0.0f;
    for (int64_t d = d0; d < D; ++d) s += a[d] * b[d];
    return s;
}

// acc[d0 .. d0 + 8R) = acc * corr + sum_j p_j V[j], registers only.
template <int R>
static inline void pv_block(float* acc, const float* V, int64_t ldv, const float* p, int64_t n, float corr,
                            int64_t d0) {
    __m256 a[R];
    const __m256 c = _mm256_set1_ps(corr);
    for (int r = 0; r < R; ++r) a[r] = _mm256_mul_ps(_mm256_loadu_ps(acc + d0 + 8 * r), c);
    for (int64_t j = 0; j < n; ++j) {
        const __m256 pj = _mm256_set1_ps(p[j]);
        const float* vr = V + j * ldv + d0;
        for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8 * r), a[r]);
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + d0 + 8 * r, a[r]);
}

void attention_load_row_avx2(float* dst, const void* src, qwen3vl_dtype t, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, avx2::load8(src, t, static_cast<size_t>(i)));
    for (; i < n; ++i) dst[i] = load_f32(src, t, static_cast<size_t>(i));
}

void attention_load_row_q8_avx2(float* dst, const int8_t* q, const uint16_t* d, int64_t n) {
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256 s = _mm256_set1_ps(f16_to_f32(d[b]));
        for (int64_t i = 0; i < 32; i += 8) {
            const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 32 * b + i));
            const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
            _mm256_storeu_ps(dst + 32 * b + i, _mm256_mul_ps(s, v));  // one rounding: exact, as the scalar form
        }
    }
}

void attention_tile_avx2(const float* q, const float* K, int64_t ldk, const float* V, int64_t ldv, int64_t n,
                         int64_t D, float scale, float* scores, float& m, float& l, float* acc) {
    const int64_t D8 = D & ~int64_t{7};
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *k0 = K + j * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        for (int64_t d = 0; d < D8; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            s0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), s0);
            s1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), s1);
            s2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), s2);
            s3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), s3);
        }
        // Four horizontal sums at once: hadd pairs, then fold the two 128-bit halves.
        const __m256 h01 = _mm256_hadd_ps(s0, s1), h23 = _mm256_hadd_ps(s2, s3);
        const __m256 h = _mm256_hadd_ps(h01, h23);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        alignas(16) float sums[4];
        _mm_store_ps(sums, r);
        scores[j] = (sums[0] + dot_tail(q, k0, D8, D)) * scale;
        scores[j + 1] = (sums[1] + dot_tail(q, k1, D8, D)) * scale;
        scores[j + 2] = (sums[2] + dot_tail(q, k2, D8, D)) * scale;
        scores[j + 3] = (sums[3] + dot_tail(q, k3, D8, D)) * scale;
    }
    for (; j < n; ++j) {
        const float* kr = K + j * ldk;
        __m256 s = _mm256_setzero_ps();
        for (int64_t d = 0; d < D8; d += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kr + d), s);
        scores[j] = (avx2::hsum(s) + dot_tail(q, kr, D8, D)) * scale;
    }
    const int64_t n8 = (n + 7) & ~int64_t{7};
    for (int64_t i = n; i < n8; ++i) scores[i] = -INFINITY;  // padding: exp gives 0

    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n8; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(scores + i));
    const float m_new = std::max(m, avx2::hmax(mx));
    const float corr = std::exp(m - m_new);
    const __m256 mv = _mm256_set1_ps(m_new);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n8; i += 8) {
        const __m256 p = avx2::exp(_mm256_sub_ps(_mm256_loadu_ps(scores + i), mv));
        _mm256_storeu_ps(scores + i, p);
        sum = _mm256_add_ps(sum, p);
    }
    l = l * corr + avx2::hsum(sum);
    m = m_new;

    int64_t d0 = 0;
    for (; d0 + 64 <= D; d0 += 64) pv_block<8>(acc, V, ldv, scores, n, corr, d0);
    for (; d0 + 32 <= D; d0 += 32) pv_block<4>(acc, V, ldv, scores, n, corr, d0);
    for (; d0 + 8 <= D; d0 += 8) pv_block<1>(acc, V, ldv, scores, n, corr, d0);
    for (; d0 < D; ++d0) {
        float a = acc[d0] * corr;
        for (int64_t jj = 0; jj < n; ++jj) a += scores[jj] * V[jj * ldv + d0];
        acc[d0] = a;
    }
}

}  // namespace cpu
}  // namespace qwen3vl
