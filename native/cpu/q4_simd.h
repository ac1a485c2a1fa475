// Q4 super-block headers (core/quant.h, qwen3vl.h QWEN3VL_DTYPE_Q4) decoded with AVX2 + F16C, for the translation
// units built with those flags only (gemv_avx2.cpp, gemv_avx512.cpp, gemm_avx2.cpp): the functions are static so
// that each unit keeps its own copy, compiled with its own flags (an inline function shared between units built with
// different ISA flags could be merged by the linker into the AVX-512 one).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace qwen3vl {
namespace cpu {
namespace q4simd {

// The 8 groups of the super-block header h (16 bytes, any alignment): a[g] = f16(d) * sc[g] and m[g] = f16(dmin) *
// mn[g], each exact in f32 (an 11-bit significand times a 6-bit integer), as dequantize_q4 forms them.
//   bytes 4 + g: sc[g] | (mn[g] & 3) << 6;  bytes 12 + g / 2: mn[g] >> 2 in the low (g even) or high nibble.
static inline void header_scales(const uint8_t* h, __m256* a, __m256* m) {
    int32_t dd;
    std::memcpy(&dd, h, 4);
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(dd));  // d, dmin, 0, 0
    const __m256 d = _mm256_broadcastss_ps(dm), dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(h + 4)));
    int32_t top;
    std::memcpy(&top, h + 12, 4);
    const __m128i t = _mm_cvtsi32_si128(top);
    // Bytes 12, 12, 13, 13, 14, 14, 15, 15 widened, then the low nibble for even groups and the high one for odd.
    const __m256i hi = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(t, t)), _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)),
        _mm256_set1_epi32(15));
    const __m256i sc = _mm256_and_si256(b, _mm256_set1_epi32(63));
    const __m256i mn = _mm256_or_si256(_mm256_slli_epi32(hi, 2), _mm256_srli_epi32(b, 6));
    *a = _mm256_mul_ps(_mm256_cvtepi32_ps(sc), d);
    *m = _mm256_mul_ps(_mm256_cvtepi32_ps(mn), dmin);
}

// The same in the lane order the GEMVs reduce groups in (gemm.h kQ4Order): lane i holds group 0, 4, 2, 6, 1, 5, 3, 7.
// In that order every field is one variable shift of a broadcast load: the scale bytes 4-11 as a qword broadcast give
// lanes of bytes 4-7, 8-11 alternately, and lane i's byte is the one its shift brings down; the top nibbles likewise
// from bytes 12-15 broadcast as a dword. No shuffle but the f16 conversion's.
static inline void header_scales_ordered(const uint8_t* h, __m256* a, __m256* m) {
    const __m256 dm = _mm256_cvtph_ps(_mm_castps_si128(_mm_broadcast_ss(reinterpret_cast<const float*>(h))));
    const __m256i bytes = _mm256_broadcastq_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(h + 4)));
    const __m256i top = _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(h + 12)));
    const __m256i sc = _mm256_and_si256(_mm256_srlv_epi32(bytes, _mm256_setr_epi32(0, 0, 16, 16, 8, 8, 24, 24)),
                                        _mm256_set1_epi32(63));
    const __m256i mn_lo = _mm256_and_si256(_mm256_srlv_epi32(bytes, _mm256_setr_epi32(6, 6, 22, 22, 14, 14, 30, 30)),
                                           _mm256_set1_epi32(3));
    const __m256i mn_hi = _mm256_and_si256(_mm256_srlv_epi32(top, _mm256_setr_epi32(0, 16, 8, 24, 4, 20, 12, 28)),
                                           _mm256_set1_epi32(15));
    const __m256i mn = _mm256_or_si256(_mm256_slli_epi32(mn_hi, 2), mn_lo);
    *a = _mm256_mul_ps(_mm256_cvtepi32_ps(sc), _mm256_moveldup_ps(dm));
    *m = _mm256_mul_ps(_mm256_cvtepi32_ps(mn), _mm256_movehdup_ps(dm));
}

}  // namespace q4simd
}  // namespace cpu
}  // namespace qwen3vl
