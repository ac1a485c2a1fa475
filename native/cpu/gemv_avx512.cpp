// Decode-time GEMV of Q8 and Q4 weights with AVX-512 VNNI, the alternative to the AVX2 one in gemv_avx2.cpp (same
// inputs, same work split, same arithmetic up to the order of the f32 sums; Q4 below, after Q8). Built with AVX-512
// F/BW/VL/VNNI (and AVX2, FMA, F16C); called only where cpu_has_avx512_vnni() (gemm.h, Q8Gemv).
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
#include <cstring>
#include <type_traits>
#include <utility>

#include "gemm.h"

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

// ---- Q4 (core/quant.h; gemv_avx2.cpp describes the arithmetic). One 64-byte load takes 4 groups; masking and a
// 16-bit shift split it into their elements 0-15 and 16-31 (one 128-bit lane per group), which meet x in
// q4_reorder_x's order: vpdpbusd takes the nibbles as its unsigned operand and x as the signed one (no offset needed),
// and two of them (low and high halves) give per group 4 int32 lanes of 8 products each (<= 8 * 15 * 127, exact in
// f32). Two super-blocks' headers are decoded at once (16 lanes, groups in kQ4Order within each), the combined
// scales f32(a_b dx_b) spread over the 4 lanes of their group by vpermps in registers, and the mins m_b s_b of both
// super-blocks subtracted by one FNMADD. An odd last super-block is decoded alone (the upper 8 lanes' x scales and
// sums read as 0).

// Headers h0 and h1 (16 bytes each, any alignment): lanes 0-7 super-block h0, 8-15 h1, groups in kQ4Order.
inline void header_scales16(const uint8_t* h0, const uint8_t* h1, __m512* a, __m512* m) {
    int32_t d0, d1, t0, t1;
    std::memcpy(&d0, h0, 4);
    std::memcpy(&d1, h1, 4);
    std::memcpy(&t0, h0 + 12, 4);
    std::memcpy(&t1, h1 + 12, 4);
    const __m512 dm = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_setr_epi32(d0, d1, 0, 0)));  // d0, dmin0, d1, dmin1
    const __m512 d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2), dm);
    const __m512 dmin = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3), dm);
    const __m128i raw = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(h0 + 4)),
                                           _mm_loadl_epi64(reinterpret_cast<const __m128i*>(h1 + 4)));
    const __m512i b = _mm512_cvtepu8_epi32(
        _mm_shuffle_epi8(raw, _mm_setr_epi8(0, 4, 2, 6, 1, 5, 3, 7, 8, 12, 10, 14, 9, 13, 11, 15)));
    // Groups 0, 4, 2, 6 take the low nibbles of bytes 12, 14, 13, 15, groups 1, 5, 3, 7 the high ones.
    const __m128i tops = _mm_shuffle_epi8(_mm_setr_epi32(t0, t1, 0, 0),
                                          _mm_setr_epi8(0, 2, 1, 3, 0, 2, 1, 3, 4, 6, 5, 7, 4, 6, 5, 7));
    const __m512i shifts = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
    const __m512i hi = _mm512_and_si512(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(tops), shifts), _mm512_set1_epi32(15));
    const __m512i sc = _mm512_and_si512(b, _mm512_set1_epi32(63));
    const __m512i mn = _mm512_or_si512(_mm512_slli_epi32(hi, 2), _mm512_srli_epi32(b, 6));
    *a = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d);
    *m = _mm512_mul_ps(_mm512_cvtepi32_ps(mn), dmin);
}

// The lanes of quarter q (super-block q / 2, groups 4 (q % 2) to 4 (q % 2) + 3, 4 lanes each) in header_scales16's
// order: group g of super-block t sits at lane 8t + position of g in kQ4Order (0 4 2 6 1 5 3 7, its own inverse).
inline __m512i quarter_index(int q) {
    const int t = 8 * (q / 2), g = 4 * (q % 2);
    const int pos[8] = {0, 4, 2, 6, 1, 5, 3, 7};
    return _mm512_setr_epi32(t + pos[g], t + pos[g], t + pos[g], t + pos[g], t + pos[g + 1], t + pos[g + 1],
                             t + pos[g + 1], t + pos[g + 1], t + pos[g + 2], t + pos[g + 2], t + pos[g + 2],
                             t + pos[g + 2], t + pos[g + 3], t + pos[g + 3], t + pos[g + 3], t + pos[g + 3]);
}

template <class F, int... I>
inline void unroll_impl(F& f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}
// f(integral_constant<int, i>) for i < N: loops unrolled with constant indices, so that the accumulators stay in
// registers (gemv_avx2.cpp).
template <int N, class F>
inline void unroll(F&& f) {
    unroll_impl(f, std::make_integer_sequence<int, N>{});
}

// R weight rows, rs rows apart (out[m * ldo + r * rs]), against X rows of x (stride K, and K / 32 for xd and xs).
// Two super-blocks a step (Two) or the odd last one.
template <int R, int X, bool Prefetch, bool Two>
inline void q4_step(__m512 (&acc)[R * X], int64_t j, const int8_t* xq, const float* xd, const float* xs,
                    const uint8_t* wq, const uint8_t* wh, int64_t K, size_t ldw, size_t ldh) {
    constexpr int Q = Two ? 4 : 2;  // quarters: 64 bytes of nibbles, 4 groups
    const int64_t nb = K / 32;
    const __mmask16 live = Two ? __mmask16(0xffff) : __mmask16(0x00ff);
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    unroll<R>([&](auto rc) {
        constexpr int r = decltype(rc)::value;
        const uint8_t* pw = wq + r * ldw + size_t(j) * 128;
        const uint8_t* ph = wh + r * ldh + size_t(j) * 16;
        if constexpr (Prefetch) {
            for (int i = 0; i < Q; ++i)
                _mm_prefetch(reinterpret_cast<const char*>(pw + kRows * ldw + i * 64), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(ph + kRows * ldh), _MM_HINT_T0);
        }
        __m512 a, mins;
        header_scales16(ph, Two ? ph + 16 : ph, &a, &mins);
        __m512 c[X];
        unroll<X>([&](auto mc) {
            constexpr int m = decltype(mc)::value;
            const int64_t b = m * nb + j * 8;
            c[m] = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(live, xd + b));
            acc[r * X + m] = _mm512_fnmadd_ps(mins, _mm512_maskz_loadu_ps(live, xs + b), acc[r * X + m]);
        });
        unroll<Q>([&](auto ic) {
            constexpr int i = decltype(ic)::value;
            const __m512i v = _mm512_loadu_si512(pw + i * 64);
            const __m512i lo = _mm512_and_si512(v, low4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            const __m512i idx = quarter_index(i);
            unroll<X>([&](auto mc) {
                constexpr int m = decltype(mc)::value;
                const int8_t* px = xq + m * K + j * 256 + i * 128;
                const __m512i d = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(px)), hi,
                    _mm512_loadu_si512(px + 64));
                acc[r * X + m] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(idx, c[m]), acc[r * X + m]);
            });
        });
    });
}

template <int R, int X, bool Prefetch>
void q4_rows(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, const uint8_t* wq,
             const uint8_t* wh, int64_t K, int64_t rs) {
    const int64_t ns = K / 256;
    const size_t ldw = size_t(K / 2) * size_t(rs), ldh = size_t(ns) * 16 * size_t(rs);
    __m512 acc[R * X];
    for (int i = 0; i < R * X; ++i) acc[i] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 2 <= ns; j += 2) q4_step<R, X, Prefetch, true>(acc, j, xq, xd, xs, wq, wh, K, ldw, ldh);
    if (j < ns) q4_step<R, X, Prefetch, false>(acc, j, xq, xd, xs, wq, wh, K, ldw, ldh);
    for (int r = 0; r < R; ++r)
        for (int m = 0; m < X; ++m) out[m * ldo + r * rs] = _mm512_reduce_add_ps(acc[r * X + m]);
}

template <int R, int X>
void q4_rows_p(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, const uint8_t* wq,
               const uint8_t* wh, int64_t K, int64_t rs, bool prefetch) {
    if (prefetch)
        q4_rows<R, X, true>(out, ldo, xq, xd, xs, wq, wh, K, rs);
    else
        q4_rows<R, X, false>(out, ldo, xq, xd, xs, wq, wh, K, rs);
}

// All rows of x against R weight rows: 4 at a time while they last, then 2, then 1.
template <int R>
void q4_all_x(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, int64_t M,
              const uint8_t* wq, const uint8_t* wh, int64_t K, int64_t rs, bool prefetch) {
    const int64_t nb = K / 32;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4, prefetch = false)
        q4_rows_p<R, 4>(out + m * ldo, ldo, xq + m * K, xd + m * nb, xs + m * nb, wq, wh, K, rs, prefetch);
    if (m + 2 <= M) {
        q4_rows_p<R, 2>(out + m * ldo, ldo, xq + m * K, xd + m * nb, xs + m * nb, wq, wh, K, rs, prefetch);
        m += 2;
        prefetch = false;
    }
    if (m < M) q4_rows_p<R, 1>(out + m * ldo, ldo, xq + m * K, xd + m * nb, xs + m * nb, wq, wh, K, rs, prefetch);
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
