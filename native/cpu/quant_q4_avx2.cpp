// Q4 quantization of f32 rows with AVX2 (core/quant_q4_impl.h is the reference: the same bits). Built with AVX2 + F16C
// and without FMA contraction (-ffp-contract=off: GCC fuses _mm256_add_ps(_mm256_mul_ps(..)) otherwise, and every
// product and sum here must be rounded on its own, as in the reference); called only after CPU detection.
//
// The reference's sums of 32 go through 8 lanes, element i into lane i % 8 in order, and a fixed tree over the lanes:
// here the 8 lanes are those of a vector, the 32 elements of a group are 4 vectors added in order (elements 0-7, then
// 8-15, ...), and the tree is ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) on the extracted halves. Every other
// operation is the reference's, element by element: IEEE division, round to nearest even by the 1.5 * 2^23 addition,
// clampf(v, lo, hi) as min(hi, max(lo, v)) (vmaxps / vminps return their second operand when the comparison fails, so
// -0 and NaN pass through as clampf lets them), and the scalar parts of the fit (determinant, line, best grid, the f16
// scales, the 6-bit codes) in the same scalar code. The group's min and max are taken lane by lane, then across: the
// same values up to the sign of a zero, which no result depends on (a zero lo or hi is only added, subtracted or
// negated into a min that rounds to the code 0).
#include <immintrin.h>

#include <cstdint>

#include "dtype.h"
#include "quant.h"
#include "quant_cpu.h"

namespace qwen3vl {
namespace cpu {

namespace {

constexpr int kGroups = 8, kSteps = 4;  // q4impl::kGroups, q4impl::kSearchSteps

// clampf(v, lo, hi) of the reference: v < lo ? lo : (v > hi ? hi : v).
inline __m256 clampv(__m256 v, __m256 lo, __m256 hi) { return _mm256_min_ps(hi, _mm256_max_ps(lo, v)); }

inline __m256 round_small(__m256 v) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    return _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
}

// sum_lanes: ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7)).
inline float sum_lanes(__m256 v) {
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // p0+p4, p1+p5, p2+p6, p3+p7
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));                                  // (p0+p4)+(p2+p6), (p1+p5)+(p3+p7)
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

inline float hmin(__m256 v) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_min_ss(s, _mm_movehdup_ps(s)));
}

inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

// q4impl::fit_group for 32 finite weights.
void fit_group(const __m256 w[4], float* scale_out, float* min_out) {
    __m256 lo8 = w[0], hi8 = w[0];
    for (int i = 1; i < 4; ++i) {
        lo8 = _mm256_min_ps(lo8, w[i]);
        hi8 = _mm256_max_ps(hi8, w[i]);
    }
    float lo = hmin(lo8), hi = hmax(hi8);
    if (lo > 0.0f) lo = 0.0f;
    if (hi < 0.0f) hi = 0.0f;
    *scale_out = 0.0f;
    *min_out = -lo;
    if (!(hi > lo)) return;
    const float range = hi - lo;
    const __m256 lov = _mm256_set1_ps(lo), zero = _mm256_setzero_ps();
    const __m256 sixteen = _mm256_set1_ps(16.0f), fifteen = _mm256_set1_ps(15.0f);
    __m256 shifted[4], sx = zero;
    for (int i = 0; i < 4; ++i) {
        shifted[i] = _mm256_sub_ps(w[i], lov);
        sx = _mm256_add_ps(sx, w[i]);  // the same in every step of the reference
    }
    const float tx = sum_lanes(sx);
    float best_err = -1.0f;
    for (int step = 0; step <= kSteps; ++step) {
        const float levels = 14.0f + 0.25f * float(step);
        const __m256 inv = _mm256_set1_ps(levels / range);
        __m256 l[4], sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < 4; ++i) {
            const __m256 q = clampv(round_small(clampv(_mm256_mul_ps(inv, shifted[i]), zero, sixteen)), zero, fifteen);
            l[i] = q;
            sl = _mm256_add_ps(sl, q);
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(q, q));
            sxl = _mm256_add_ps(sxl, _mm256_mul_ps(w[i], q));
        }
        const float tl = sum_lanes(sl), tl2 = sum_lanes(sl2), txl = sum_lanes(sxl);
        const float n = 32.0f;
        const float det = n * tl2 - tl * tl;
        if (!(det > 0.0f)) continue;
        float s = (n * txl - tx * tl) / det;
        float off = (tl2 * tx - tl * txl) / det;
        if (off > 0.0f) {
            off = 0.0f;
            s = txl / tl2;
        }
        if (!(s > 0.0f)) continue;
        const __m256 sv = _mm256_set1_ps(s), offv = _mm256_set1_ps(off);
        __m256 e2 = zero;
        for (int i = 0; i < 4; ++i) {
            const __m256 e = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(sv, l[i]), offv), w[i]);
            e2 = _mm256_add_ps(e2, _mm256_mul_ps(e, e));
        }
        const float err = sum_lanes(e2);
        if (best_err < 0.0f || err < best_err) {
            best_err = err;
            *scale_out = s;
            *min_out = -off;
        }
    }
    if (best_err < 0.0f) {
        *scale_out = range / 15.0f;
        *min_out = -lo;
    }
}

float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
float round_small(float v) { return (v + 12582912.0f) - 12582912.0f; }

// q4impl::quantize_super for 256 finite weights; false when d or dmin overflows f16.
bool quantize_super(const float* w, uint8_t* nib, uint8_t* header) {
    __m256 v[kGroups][4];
    float s[kGroups], m[kGroups];
    float smax = 0.0f, mmax = 0.0f;
    for (int g = 0; g < kGroups; ++g) {
        for (int i = 0; i < 4; ++i) v[g][i] = _mm256_loadu_ps(w + g * 32 + i * 8);
        fit_group(v[g], &s[g], &m[g]);
        smax = s[g] > smax ? s[g] : smax;
        mmax = m[g] > mmax ? m[g] : mmax;
    }
    const uint16_t dh = f32_to_f16(smax / 63.0f);
    const uint16_t mh = f32_to_f16(mmax / 63.0f);
    const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
    if (!(d <= 65504.0f) || !(dmin <= 65504.0f)) return false;
    uint8_t sc[kGroups], mn[kGroups];
    for (int g = 0; g < kGroups; ++g) {
        sc[g] = d > 0.0f ? uint8_t(clampf(round_small(clampf(s[g] / d, 0.0f, 64.0f)), 0.0f, 63.0f)) : uint8_t(0);
        mn[g] = dmin > 0.0f ? uint8_t(clampf(round_small(clampf(m[g] / dmin, 0.0f, 64.0f)), 0.0f, 63.0f)) : uint8_t(0);
    }
    header[0] = uint8_t(dh & 0xff);
    header[1] = uint8_t(dh >> 8);
    header[2] = uint8_t(mh & 0xff);
    header[3] = uint8_t(mh >> 8);
    for (int j = 0; j < 12; ++j) header[4 + j] = 0;
    for (int g = 0; g < kGroups; ++g) {
        header[4 + g] = uint8_t(sc[g] | ((mn[g] & 3) << 6));
        header[12 + g / 2] = uint8_t(header[12 + g / 2] | ((mn[g] >> 2) << (4 * (g & 1))));
    }
    const __m256 lo = _mm256_set1_ps(-1.0f), hi = _mm256_set1_ps(16.0f), zero = _mm256_setzero_ps();
    const __m256 fifteen = _mm256_set1_ps(15.0f);
    for (int g = 0; g < kGroups; ++g) {
        const float a = d * float(sc[g]);
        const float b = dmin * float(mn[g]);
        const __m256 inv = _mm256_set1_ps(a > 0.0f ? 1.0f / a : 0.0f), bv = _mm256_set1_ps(b);
        __m256i q[4];
        for (int i = 0; i < 4; ++i)  // exact small integers: the conversion's rounding mode does not matter
            q[i] = _mm256_cvttps_epi32(
                clampv(round_small(clampv(_mm256_mul_ps(_mm256_add_ps(v[g][i], bv), inv), lo, hi)), zero, fifteen));
        // byte j = q[j] | q[j + 16] << 4: elements 0-7 with 16-23, 8-15 with 24-31, then int32 -> int16 -> int8.
        const __m256i b0 = _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4));
        const __m256i b1 = _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4));
        const __m128i h0 = _mm_packus_epi32(_mm256_castsi256_si128(b0), _mm256_extracti128_si256(b0, 1));
        const __m128i h1 = _mm_packus_epi32(_mm256_castsi256_si128(b1), _mm256_extracti128_si256(b1, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(nib + g * 16), _mm_packus_epi16(h0, h1));
    }
    return true;
}

}  // namespace

bool quantize_q4_row_avx2(const float* w, int64_t cols, uint8_t* nib, uint8_t* headers) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 big = _mm256_set1_ps(3.4028235e38f);
    for (int64_t b = 0; b < cols / kQ4Super; ++b) {
        const float* wb = w + b * kQ4Super;
        __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        for (int i = 0; i < 32; ++i)
            finite = _mm256_and_ps(finite,
                                   _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(wb + i * 8), abs_mask), big, _CMP_LE_OQ));
        if (_mm256_movemask_ps(finite) != 0xff) return false;  // the reference names the weight
        if (!quantize_super(wb, nib + b * (kQ4Super / 2), headers + b * kQ4HeaderBytes)) return false;
    }
    return true;
}

}  // namespace cpu
}  // namespace qwen3vl
