// Decode-time GEMV of Q8 weights with AVX-512 VNNI, the alternative to the AVX2 one in gemv_avx2.cpp (same inputs,
// same work split, same arithmetic up to the order of the f32 sums). Built with AVX-512 F/BW/VL/VNNI (and AVX2, FMA,
// F16C); called only where cpu_has_avx512_vnni() (gemm.h, Q8Gemv).
//
// vpdpbusd multiplies unsigned by signed bytes and sums each 4 products into an int32 lane, with no intermediate
// saturation. x is made unsigned by an offset, ux = qx + 128 (qx XOR 0x80, in [1, 255]), so a lane of
// dpbusd(ux, w) is D = sum qx w + 128 sum w, and the second term is C = dpbusd(0x80 bytes, w), computed once per
// weight row for all rows of x: D - C is the lane's dot product, exact (|D| <= 4 * 255 * 128 < 2^31) and converted
// to f32 exactly (|D - C| <= 4 * 127 * 128 < 2^24), for every int8 weight, -128 included. Against the AVX2 loop's
// vpsignb, vpsignb, vpmaddubsw, vpmaddwd per 32 weights, this is one vpdpbusd (plus the shared C) per 64.
//
// A 512-bit register holds 2 blocks. The combined scales f16(dw) * dx of 16 blocks are formed at once (vcvtph2ps of
// 16 weight scales times 16 x scales, one f32 rounding each, as in the AVX2 loop) and kept on the stack; each step
// spreads its two over the 8 lanes of their blocks by vpermps. An odd last block is a masked load (the other half
// zero, its scale lanes zero too). With 32 registers, up to 4 rows of x share each weight load.
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge source, which -Wall then reports as
// "used uninitialized" inside avx512fintrin.h (GCC bug 105593, fixed in GCC 13); the warnings are raised at the
// header's lines, so they are silenced before it is included, for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "gemm.h"
#include "q4_simd.h"

namespace qwen3vl {
namespace cpu {

namespace {

constexpr int kRows = 4;        // weight rows per step, as in gemv_avx2.cpp
constexpr int64_t kChunk = 16;  // blocks per chunk of combined scales: one 512-bit vector of them

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Two blocks at p, or one (the upper 32 bytes zero and not read).
inline __m512i load_blocks(const int8_t* p, bool two) {
    return two ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(__mmask64(0xffffffffull), p);
}

// R weight rows, rs rows apart (out[m * ldo + r * rs]), against X rows of x. Rows of x have stride K (int8) and nb
// (scales); weight rows K and nb * 2 bytes. prefetch: the rows R * rs further on, the next group of this row order.
template <int R, int X>
void rows(float* out, int64_t ldo, const int8_t* xq, const float* xd, const int8_t* wq, const uint8_t* wd,
          int64_t K, int64_t nb, int64_t rs, bool prefetch) {
    const size_t ldw = size_t(K) * size_t(rs), lds = size_t(nb) * 2 * size_t(rs);
    const __m512i offset = _mm512_set1_epi8(char(0x80));
    // Lanes 0-7 take the first block of a step, lanes 8-15 the second (set_epi32 lists lanes from the top).
    const __m512i pair = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[R * X];
    for (int i = 0; i < R * X; ++i) acc[i] = _mm512_setzero_ps();
    alignas(64) float sc[R * X][kChunk];
    for (int64_t c0 = 0; c0 < nb; c0 += kChunk) {
        const int64_t cn = min64(kChunk, nb - c0);
        const __mmask16 live = __mmask16((1u << cn) - 1u);
        for (int r = 0; r < R; ++r) {
            const uint8_t* dw = wd + r * lds + size_t(c0) * 2;
            // The next group's scales, as far ahead as its int8 rows.
            if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(dw + kRows * lds), _MM_HINT_T0);
            const __m512 dwv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, dw));
            for (int m = 0; m < X; ++m)
                _mm512_store_ps(sc[r * X + m], _mm512_mul_ps(dwv, _mm512_maskz_loadu_ps(live, xd + m * nb + c0)));
        }
        for (int64_t j = 0; j < cn; j += 2) {
            const bool two = j + 1 < cn;
            const size_t k = size_t(c0 + j) * 32;
            const __m512i idx = _mm512_add_epi32(pair, _mm512_set1_epi32(int(j)));
            __m512i ux[X];
            for (int m = 0; m < X; ++m) ux[m] = _mm512_xor_si512(load_blocks(xq + m * K + int64_t(k), two), offset);
            for (int r = 0; r < R; ++r) {
                const int8_t* p = wq + r * ldw + k;
                if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(p + kRows * ldw), _MM_HINT_T0);
                const __m512i wv = load_blocks(p, two);
                const __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, wv);
                for (int m = 0; m < X; ++m) {
                    const __m512i d = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ux[m], wv), c);
                    acc[r * X + m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                                     _mm512_permutexvar_ps(idx, _mm512_load_ps(sc[r * X + m])),
                                                     acc[r * X + m]);
                }
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int m = 0; m < X; ++m) out[m * ldo + r * rs] = _mm512_reduce_add_ps(acc[r * X + m]);
}

// All rows of x against R weight rows: 4 at a time while they last, then 2, then 1.
template <int R>
void all_x(float* out, int64_t ldo, const int8_t* xq, const float* xd, int64_t M, const int8_t* wq,
           const uint8_t* wd, int64_t K, int64_t nb, int64_t rs, bool prefetch) {
    int64_t m = 0;
    // Only the first pass over these rows streams them from memory; later passes hit L1/L2.
    for (; m + 4 <= M; m += 4, prefetch = false)
        rows<R, 4>(out + m * ldo, ldo, xq + m * K, xd + m * nb, wq, wd, K, nb, rs, prefetch);
    if (m + 2 <= M) {
        rows<R, 2>(out + m * ldo, ldo, xq + m * K, xd + m * nb, wq, wd, K, nb, rs, prefetch);
        m += 2;
        prefetch = false;
    }
    if (m < M) rows<R, 1>(out + m * ldo, ldo, xq + m * K, xd + m * nb, wq, wd, K, nb, rs, prefetch);
}

// ---- Q4 (core/quant.h; the AVX2 loop in gemv_avx2.cpp describes the arithmetic). One 64-byte load takes 4 groups;
// masking and a 16-bit shift split it into their elements 0-15 and 16-31 (one 128-bit lane per group), which meet x
// in q4_reorder_x's order: vpdpbusd takes the nibbles as its unsigned operand and x as the signed one, no offset
// needed, two of them (low and high halves) give per group 4 int32 lanes of 8 products each (<= 8 * 15 * 127, exact
// in f32). The combined scales f32(a_b dx_b) of a chunk of super-blocks are formed first, each repeated over its 4
// lanes; the mins enter once per super-block into the accumulator's low 8 lanes (m_b times the x blocks' sums).
constexpr int64_t kQ4Chunk = 4;  // super-blocks per chunk of combined scales

template <int R, int X>
void q4_rows(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, const uint8_t* wq,
             const uint8_t* wh, int64_t K, int64_t rs, bool prefetch) {
    const int64_t ns = K / 256, nb = K / 32;
    const size_t ldw = size_t(K / 2) * size_t(rs), ldh = size_t(ns) * 16 * size_t(rs);
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    // Lanes 4i to 4i + 3 take group i of the 4 (set_epi32 lists lanes from the top).
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i four = _mm512_set1_epi32(4);
    __m512 acc[R * X];
    for (int i = 0; i < R * X; ++i) acc[i] = _mm512_setzero_ps();
    alignas(64) float sc[R * X][kQ4Chunk * 32];
    for (int64_t c0 = 0; c0 < ns; c0 += kQ4Chunk) {
        const int64_t cn = min64(kQ4Chunk, ns - c0);
        for (int r = 0; r < R; ++r) {
            const uint8_t* h = wh + r * ldh + size_t(c0) * 16;
            if (prefetch) {  // the next group's headers (64 bytes a chunk, at any alignment)
                _mm_prefetch(reinterpret_cast<const char*>(h + kRows * ldh), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(h + kRows * ldh + size_t(cn) * 16 - 1), _MM_HINT_T0);
            }
            for (int64_t j = 0; j < cn; ++j) {
                __m256 a, mins;
                q4simd::header_scales(h + j * 16, &a, &mins);
                for (int m = 0; m < X; ++m) {
                    const int64_t b = m * nb + (c0 + j) * 8;
                    const __m512 c = _mm512_castps256_ps512(_mm256_mul_ps(a, _mm256_loadu_ps(xd + b)));
                    // acc - mins * s in lanes 0-7, the other lanes kept.
                    acc[r * X + m] = _mm512_mask3_fnmadd_ps(_mm512_castps256_ps512(mins),
                                                            _mm512_castps256_ps512(_mm256_loadu_ps(xs + b)),
                                                            acc[r * X + m], __mmask16(0x00ff));
                    _mm512_store_ps(sc[r * X + m] + j * 32, _mm512_permutexvar_ps(spread, c));
                    _mm512_store_ps(sc[r * X + m] + j * 32 + 16,
                                    _mm512_permutexvar_ps(_mm512_add_epi32(spread, four), c));
                }
            }
        }
        for (int64_t j = 0; j < cn; ++j)
            for (int half = 0; half < 2; ++half) {
                const size_t kb = size_t(c0 + j) * 128 + size_t(half) * 64;  // groups 4 half to 4 half + 3
                const int64_t xo = (c0 + j) * 256 + half * 128;
                __m512i xlo[X], xhi[X];
                for (int m = 0; m < X; ++m) {
                    xlo[m] = _mm512_loadu_si512(xq + m * K + xo);
                    xhi[m] = _mm512_loadu_si512(xq + m * K + xo + 64);
                }
                for (int r = 0; r < R; ++r) {
                    const uint8_t* p = wq + r * ldw + kb;
                    if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(p + kRows * ldw), _MM_HINT_T0);
                    const __m512i v = _mm512_loadu_si512(p);
                    const __m512i lo = _mm512_and_si512(v, low4);
                    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
                    for (int m = 0; m < X; ++m) {
                        const __m512i d =
                            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo[m]), hi, xhi[m]);
                        acc[r * X + m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                                         _mm512_load_ps(sc[r * X + m] + j * 32 + half * 16),
                                                         acc[r * X + m]);
                    }
                }
            }
    }
    for (int r = 0; r < R; ++r)
        for (int m = 0; m < X; ++m) out[m * ldo + r * rs] = _mm512_reduce_add_ps(acc[r * X + m]);
}

template <int R>
void q4_all_x(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, int64_t M,
              const uint8_t* wq, const uint8_t* wh, int64_t K, int64_t rs, bool prefetch) {
    const int64_t nb = K / 32;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4, prefetch = false)
        q4_rows<R, 4>(out + m * ldo, ldo, xq + m * K, xd + m * nb, xs + m * nb, wq, wh, K, rs, prefetch);
    if (m + 2 <= M) {
        q4_rows<R, 2>(out + m * ldo, ldo, xq + m * K, xd + m * nb, xs + m * nb, wq, wh, K, rs, prefetch);
        m += 2;
        prefetch = false;
    }
    if (m < M) q4_rows<R, 1>(out + m * ldo, ldo, xq + m * K, xd + m * nb, xs + m * nb, wq, wh, K, rs, prefetch);
}

}  // namespace

void gemv_q8_avx512(float* out, int64_t ldo, const int8_t* xq, const float* xd, int64_t M, int64_t K, Weight w,
                    int64_t n0, int64_t n1) {
    const int64_t nb = K / 32;
    const auto* q = static_cast<const int8_t*>(w.data);
    const auto* d = static_cast<const uint8_t*>(w.scales);
    const int64_t rs = q8_row_step(K), span = kRows * rs;
    int64_t n = n0;
    // Groups of kRows rows rs apart, rs groups per span of rows (gemm.h, q8_row_step); then the rest in plain groups.
    for (; n + span <= n1; n += span)
        for (int64_t i = 0; i < rs; ++i)
            all_x<kRows>(out + (n + i - n0), ldo, xq, xd, M, q + (n + i) * K, d + (n + i) * nb * 2, K, nb, rs,
                         n + 2 * span <= n1);
    for (; n + kRows <= n1; n += kRows)
        all_x<kRows>(out + (n - n0), ldo, xq, xd, M, q + n * K, d + n * nb * 2, K, nb, 1, n + 2 * kRows <= n1);
    for (; n < n1; ++n) all_x<1>(out + (n - n0), ldo, xq, xd, M, q + n * K, d + n * nb * 2, K, nb, 1, false);
}

void gemv_q4_avx512(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, int64_t M, int64_t K,
                    Weight w, int64_t n0, int64_t n1) {
    const auto* q = static_cast<const uint8_t*>(w.data);
    const auto* h = static_cast<const uint8_t*>(w.scales);
    const size_t row_q = size_t(K / 2), row_h = size_t(K / 256) * 16;
    const int64_t rs = q4_row_step(K), span = kRows * rs;
    int64_t n = n0;
    for (; n + span <= n1; n += span)
        for (int64_t i = 0; i < rs; ++i)
            q4_all_x<kRows>(out + (n + i - n0), ldo, xq, xd, xs, M, q + size_t(n + i) * row_q,
                            h + size_t(n + i) * row_h, K, rs, n + 2 * span <= n1);
    for (; n + kRows <= n1; n += kRows)
        q4_all_x<kRows>(out + (n - n0), ldo, xq, xd, xs, M, q + size_t(n) * row_q, h + size_t(n) * row_h, K, 1,
                        n + 2 * kRows <= n1);
    for (; n < n1; ++n)
        q4_all_x<1>(out + (n - n0), ldo, xq, xd, xs, M, q + size_t(n) * row_q, h + size_t(n) * row_h, K, 1, false);
}

}  // namespace cpu
}  // namespace qwen3vl
