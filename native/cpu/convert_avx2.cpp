// Built with AVX2 + FMA + F16C enabled (see native/CMakeLists.txt); called only after CPU detection.
#include <immintrin.h>

#include <cstdint>

#include "convert.h"
#include "dtype.h"

namespace qwen3vl {
namespace cpu {

void bf16_to_f32_avx2(float* dst, const uint16_t* src, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
        const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
    for (; i < count; ++i) dst[i] = bf16_to_f32(src[i]);
}

void f32_to_bf16_avx2(uint16_t* dst, const float* src, size_t count) {
    const __m256i bias = _mm256_set1_epi32(0x7fff);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    const __m256i inf = _mm256_set1_epi32(0x7f800000);
    const __m256i quiet = _mm256_set1_epi32(0x00400000);
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(src + i));
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb));
        const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
        const __m256i r = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, _mm256_or_si256(u, quiet), is_nan), 16);
        // Pack 8 x 32-bit (values < 65536) to 8 x 16-bit: packus works per 128-bit lane, then fix the order.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(packed));
    }
    for (; i < count; ++i) dst[i] = f32_to_bf16(src[i]);
}

void f16_to_f32_avx2(float* dst, const uint16_t* src, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < count; ++i) dst[i] = f16_to_f32(src[i]);
}

void f32_to_f16_avx2(uint16_t* dst, const float* src, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < count; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace cpu
}  // namespace qwen3vl
