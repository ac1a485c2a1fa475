// Q8 quantization of f32 rows with AVX2 (core/quant.h is the reference: the same bits). Built with AVX2 + FMA + F16C;
// called only after CPU detection. Per block of 32: max |w| over four vectors, the scale d = f16(max / 127) by the
// reference's scalar conversion (one per block), then q = round_to_nearest_even(w / f32(d)) by IEEE division and
// rounding, clamped to +-127 and packed to int8 in order.
#include <immintrin.h>

#include <cstdint>

#include "dtype.h"
#include "quant.h"
#include "quant_cpu.h"

namespace qwen3vl {
namespace cpu {

bool quantize_q8_row_avx2(const float* w, int64_t cols, int8_t* q, uint16_t* d) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < cols / kQ8Block; ++b) {
        const float* wb = w + b * kQ8Block;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
            v[i] = _mm256_loadu_ps(wb + 8 * i);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
        }
        // A NaN in the block is lost by max_ps (it returns the second operand): check finiteness separately.
        __m256 finite = _mm256_set1_ps(-1.0f);
        for (int i = 0; i < 4; ++i)
            finite = _mm256_and_ps(finite, _mm256_cmp_ps(_mm256_andnot_ps(sign, v[i]), _mm256_set1_ps(3.4028235e38f), _CMP_LE_OQ));
        if (_mm256_movemask_ps(finite) != 0xff) return false;
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const uint16_t dh = f32_to_f16(amax / 127.0f);
        const float scale = f16_to_f32(dh);
        if (!(scale <= 65504.0f)) return false;  // overflow: the reference names the block
        d[b] = dh;
        int8_t* qb = q + b * kQ8Block;
        if (scale == 0.0f) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb), _mm256_setzero_si256());
            continue;
        }
        const __m256 s = _mm256_set1_ps(scale);
        __m256i r[4];
        for (int i = 0; i < 4; ++i) {
            const __m256 x = _mm256_round_ps(_mm256_div_ps(v[i], s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r[i] = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, x)));
        }
        // int32 -> int16 -> int8 packs interleave 128-bit lanes; the permute restores the element order.
        const __m256i p16a = _mm256_packs_epi32(r[0], r[1]), p16b = _mm256_packs_epi32(r[2], r[3]);
        const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb), _mm256_permutevar8x32_epi32(p8, order));
    }
    return true;
}

}  // namespace cpu
}  // namespace qwen3vl
