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
// scales, the 6-bit codes) in the same scalar code; the 8 groups of a super-block go through each stage of the fit
// together (fit_groups). The group's min and max are taken lane by lane, then across: the same values up to the sign
// of a zero, which no result depends on (a zero lo or hi is only added, subtracted or negated into a min that rounds
// to the code 0).
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
    // a: p0+p4, p1+p5, p2+p6, p3+p7; b: (p0+p4)+(p2+p6), (p1+p5)+(p3+p7).
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
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

// q4impl::fit_group for the 8 groups of a super-block (256 finite weights), each group's operations exactly the
// reference's. The groups go through each stage together: one group's fit is a chain of dependent operations (a
// division, the rounding, 4-deep lane sums, the tree, the line, another division, the error sums) that left the
// vector units mostly idle when groups were fitted one after the other: Gaussian rows, one thread, min of 3
// alternating runs, 7.0 -> 5.5 ns per weight (the reference: 24 ns).
void fit_groups(const float* w, float* scale_out, float* min_out) {
    const __m256 zero = _mm256_setzero_ps(), sixteen = _mm256_set1_ps(16.0f), fifteen = _mm256_set1_ps(15.0f);
    float lo[kGroups], range[kGroups], tx[kGroups], best_err[kGroups];
    bool live[kGroups];
    for (int g = 0; g < kGroups; ++g) {
        const float* wg = w + g * 32;
        __m256 lo8 = _mm256_loadu_ps(wg), hi8 = lo8, sx = _mm256_add_ps(zero, lo8);
        for (int i = 1; i < 4; ++i) {
            const __m256 v = _mm256_loadu_ps(wg + i * 8);
            lo8 = _mm256_min_ps(lo8, v);
            hi8 = _mm256_max_ps(hi8, v);
            sx = _mm256_add_ps(sx, v);  // the same in every step of the reference
        }
        float l = hmin(lo8), h = hmax(hi8);
        if (l > 0.0f) l = 0.0f;
        if (h < 0.0f) h = 0.0f;
        scale_out[g] = 0.0f;
        min_out[g] = -l;
        lo[g] = l;
        live[g] = h > l;  // else all zero
        range[g] = h - l;
        tx[g] = sum_lanes(sx);
        best_err[g] = -1.0f;
    }
    alignas(32) float levels_q[kGroups][32];
    for (int step = 0; step <= kSteps; ++step) {
        const float levels = 14.0f + 0.25f * float(step);
        float tl[kGroups], tl2[kGroups], txl[kGroups];
        for (int g = 0; g < kGroups; ++g) {
            if (!live[g]) continue;
            const float* wg = w + g * 32;
            const __m256 inv = _mm256_set1_ps(levels / range[g]), lov = _mm256_set1_ps(lo[g]);
            __m256 sl = zero, sl2 = zero, sxl = zero;
            for (int i = 0; i < 4; ++i) {
                const __m256 v = _mm256_loadu_ps(wg + i * 8);
                const __m256 q = clampv(round_small(clampv(_mm256_mul_ps(inv, _mm256_sub_ps(v, lov)), zero, sixteen)),
                                        zero, fifteen);
                _mm256_store_ps(levels_q[g] + i * 8, q);
                sl = _mm256_add_ps(sl, q);
                sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(q, q));
                sxl = _mm256_add_ps(sxl, _mm256_mul_ps(v, q));
            }
            tl[g] = sum_lanes(sl);
            tl2[g] = sum_lanes(sl2);
            txl[g] = sum_lanes(sxl);
        }
        for (int g = 0; g < kGroups; ++g) {
            if (!live[g]) continue;
            const float n = 32.0f;
            const float det = n * tl2[g] - tl[g] * tl[g];
            if (!(det > 0.0f)) continue;
            float sc = (n * txl[g] - tx[g] * tl[g]) / det;
            float off = (tl2[g] * tx[g] - tl[g] * txl[g]) / det;
            if (off > 0.0f) {
                off = 0.0f;
                sc = txl[g] / tl2[g];
            }
            if (!(sc > 0.0f)) continue;
            const float* wg = w + g * 32;
            const __m256 sv = _mm256_set1_ps(sc), offv = _mm256_set1_ps(off);
            __m256 e2 = zero;
            for (int i = 0; i < 4; ++i) {
                const __m256 l = _mm256_load_ps(levels_q[g] + i * 8);
                const __m256 e = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(sv, l), offv), _mm256_loadu_ps(wg + i * 8));
                e2 = _mm256_add_ps(e2, _mm256_mul_ps(e, e));
            }
            const float err = sum_lanes(e2);
            if (best_err[g] < 0.0f || err < best_err[g]) {
                best_err[g] = err;
                scale_out[g] = sc;
                min_out[g] = -off;
            }
        }
    }
    for (int g = 0; g < kGroups; ++g)
        if (live[g] && best_err[g] < 0.0f) {  // no candidate fitted: the plain grid
            scale_out[g] = range[g] / 15.0f;
            min_out[g] = -lo[g];
        }
}

float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
float round_small(float v) { return (v + 12582912.0f) - 12582912.0f; }

// q4impl::quantize_super for 256 finite weights; false when d or dmin overflows f16.
bool quantize_super(const float* w, uint8_t* nib, uint8_t* header) {
    float s[kGroups], m[kGroups];
    float smax = 0.0f, mmax = 0.0f;
    fit_groups(w, s, m);
    for (int g = 0; g < kGroups; ++g) {
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
            q[i] = _mm256_cvttps_epi32(clampv(
                round_small(clampv(_mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(w + g * 32 + i * 8), bv), inv), lo, hi)),
                zero, fifteen));
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
        for (int i = 0; i < 32; ++i) {
            const __m256 a = _mm256_and_ps(_mm256_loadu_ps(wb + i * 8), abs_mask);
            finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, big, _CMP_LE_OQ));
        }
        if (_mm256_movemask_ps(finite) != 0xff) return false;  // the reference names the weight
        if (!quantize_super(wb, nib + b * (kQ4Super / 2), headers + b * kQ4HeaderBytes)) return false;
    }
    return true;
}

}  // namespace cpu
}  // namespace qwen3vl
