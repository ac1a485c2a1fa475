// Decode-time GEMV (a few rows of x against a streamed weight matrix). Built with AVX2 + FMA + F16C; called only
// after CPU detection. The loop is bound by memory bandwidth: every weight row is read once per call, 16 elements
// (32 bytes of bf16 / f16) per step, widened in registers and FMA'd against every row of x, four weight rows at a
// time so that four independent streams are in flight, with the next four rows prefetched. x stays in L1.
//
// Q8 weights (core/quant.h) are not widened: x is quantized the same way (per row and block of 32, once per call,
// gemv_quantize_x_avx2) and each block is one int8 dot product of 32 pairs, exact in int32, scaled by the product of
// the two block scales into an f32 accumulator. That reads 34 bytes per 32 weights (bf16: 64) with about as many
// instructions per byte as the bf16 loop, so the loop stays bandwidth-bound at M = 1. Q4 weights take the same x
// (reordered, with its block sums) and nibble dots; see "Q4" below.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "dtype.h"
#include "gemm.h"
#include "q4_simd.h"
#include "simd_avx2.h"

namespace qwen3vl {
namespace cpu {

namespace {

constexpr int kRows = 4;  // weight rows per step

// Widens 16 weights at p into two f32 vectors matching the x layout (see gemv_permute_x_avx2 for bf16).
template <qwen3vl_dtype D>
inline void load16(const uint8_t* p, __m256& lo, __m256& hi) {
    if (D == QWEN3VL_DTYPE_BF16) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        lo = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));                                // even elements
        hi = _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(int32_t(0xffff0000u))));  // odd elements
    } else if (D == QWEN3VL_DTYPE_F16) {
        lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
    } else {
        lo = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
        hi = _mm256_loadu_ps(reinterpret_cast<const float*>(p + 32));
    }
}

// The hardware prefetchers stop at 4 KiB pages, and a 2048-wide bf16 row is one page: each group of rows would
// start cold. Prefetching the same offset in the next group of rows (kRows * ldw ahead) keeps the stream going:
// 14-19% less time on q_proj / down_proj / lm_head at M = 1 (min of 4 single-thread runs, bench_ops_linear).
inline void prefetch_next_group(const uint8_t* p, size_t ldw) {
    _mm_prefetch(reinterpret_cast<const char*>(p + kRows * ldw), _MM_HINT_T0);
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Four horizontal sums at once: {hsum(a), hsum(b), hsum(c), hsum(d)}.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 ab = _mm256_hadd_ps(a, b);
    const __m256 cd = _mm256_hadd_ps(c, d);
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// One x row against kRows weight rows; separate accumulators for the two halves keep 8 FMA chains in flight.
template <qwen3vl_dtype D>
void rows4_x1(float* out, const float* x, int64_t K, const uint8_t* w, size_t ldw, bool prefetch) {
    constexpr size_t es = D == QWEN3VL_DTYPE_F32 ? 4 : 2;
    __m256 acc0[kRows], acc1[kRows];
    for (int r = 0; r < kRows; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    const int64_t K16 = K & ~int64_t(15);
    for (int64_t k = 0; k < K16; k += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
        for (int r = 0; r < kRows; ++r) {
            if (prefetch) prefetch_next_group(w + r * ldw + size_t(k) * es, ldw);
            __m256 lo, hi;
            load16<D>(w + r * ldw + size_t(k) * es, lo, hi);
            acc0[r] = _mm256_fmadd_ps(lo, x0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(hi, x1, acc1[r]);
        }
    }
    __m128 s = hsum4(_mm256_add_ps(acc0[0], acc1[0]), _mm256_add_ps(acc0[1], acc1[1]),
                     _mm256_add_ps(acc0[2], acc1[2]), _mm256_add_ps(acc0[3], acc1[3]));
    float sums[kRows];
    _mm_storeu_ps(sums, s);
    for (int64_t k = K16; k < K; ++k)
        for (int r = 0; r < kRows; ++r) sums[r] += x[k] * load_f32<D>(w + r * ldw + size_t(k) * es);
    for (int r = 0; r < kRows; ++r) out[r] = sums[r];
}

// Two x rows against kRows weight rows: the weights are widened once and used twice.
template <qwen3vl_dtype D>
void rows4_x2(float* out, int64_t ldo, const float* x, int64_t K, const uint8_t* w, size_t ldw, bool prefetch) {
    constexpr size_t es = D == QWEN3VL_DTYPE_F32 ? 4 : 2;
    __m256 acc[2][kRows];
    for (int r = 0; r < kRows; ++r) acc[0][r] = acc[1][r] = _mm256_setzero_ps();
    const float* xb = x + K;
    const int64_t K16 = K & ~int64_t(15);
    for (int64_t k = 0; k < K16; k += 16) {
        const __m256 a0 = _mm256_loadu_ps(x + k), a1 = _mm256_loadu_ps(x + k + 8);
        const __m256 b0 = _mm256_loadu_ps(xb + k), b1 = _mm256_loadu_ps(xb + k + 8);
        for (int r = 0; r < kRows; ++r) {
            if (prefetch) prefetch_next_group(w + r * ldw + size_t(k) * es, ldw);
            __m256 lo, hi;
            load16<D>(w + r * ldw + size_t(k) * es, lo, hi);
            acc[0][r] = _mm256_fmadd_ps(hi, a1, _mm256_fmadd_ps(lo, a0, acc[0][r]));
            acc[1][r] = _mm256_fmadd_ps(hi, b1, _mm256_fmadd_ps(lo, b0, acc[1][r]));
        }
    }
    for (int m = 0; m < 2; ++m) {
        float sums[kRows];
        _mm_storeu_ps(sums, hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]));
        const float* xm = x + m * K;
        for (int64_t k = K16; k < K; ++k)
            for (int r = 0; r < kRows; ++r) sums[r] += xm[k] * load_f32<D>(w + r * ldw + size_t(k) * es);
        for (int r = 0; r < kRows; ++r) out[m * ldo + r] = sums[r];
    }
}

// One x row against one weight row (the N % 4 tail).
template <qwen3vl_dtype D>
float row1_x1(const float* x, int64_t K, const uint8_t* w) {
    constexpr size_t es = D == QWEN3VL_DTYPE_F32 ? 4 : 2;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t K16 = K & ~int64_t(15);
    for (int64_t k = 0; k < K16; k += 16) {
        __m256 lo, hi;
        load16<D>(w + size_t(k) * es, lo, hi);
        acc0 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + k), acc0);
        acc1 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + k + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (int64_t k = K16; k < K; ++k) s += x[k] * load_f32<D>(w + size_t(k) * es);
    return s;
}

template <qwen3vl_dtype D>
void gemv(float* out, int64_t ldo, const float* x, int64_t M, int64_t K, const void* wdata, int64_t n0, int64_t n1) {
    constexpr size_t es = D == QWEN3VL_DTYPE_F32 ? 4 : 2;
    const size_t ldw = size_t(K) * es;
    const auto* w = static_cast<const uint8_t*>(wdata);
    int64_t n = n0;
    // Rows of x are taken in pairs while the four weight rows (4 * K * es bytes) are still in L1/L2.
    for (; n + kRows <= n1; n += kRows) {
        const uint8_t* wn = w + size_t(n) * ldw;
        float* o = out + (n - n0);
        // Only the first pass over these rows streams them from memory; later passes hit L1/L2.
        bool prefetch = n + 2 * kRows <= n1;
        int64_t m = 0;
        for (; m + 2 <= M; m += 2, prefetch = false) rows4_x2<D>(o + m * ldo, ldo, x + m * K, K, wn, ldw, prefetch);
        if (m < M) rows4_x1<D>(o + m * ldo, x + m * K, K, wn, ldw, prefetch);
    }
    for (; n < n1; ++n)
        for (int64_t m = 0; m < M; ++m) out[m * ldo + (n - n0)] = row1_x1<D>(x + m * K, K, w + size_t(n) * ldw);
}

// ---- Q8. A block is 32 int8 of a weight row (one unaligned 256-bit load) against the 32 int8 of x's block.
// vpmaddubsw multiplies unsigned by signed bytes, so the signs move onto x: |w| * (x * sign(w)), pairs summed to
// int16, then vpmaddwd by ones sums pairs to 8 int32 lanes. No step saturates: |qx| <= 127 and |qw| <= 128 (the
// quantizer writes +-127, a raw plane may hold -128, whose vpsignb |w| is 128 read as unsigned), so a pair is at
// most 2 * 128 * 127 = 32512 < 2^15; a lane (4 products, <= 65024) converts to f32 exactly. qx is never -128, whose
// vpsignb negation would wrap.

// Per lane, the sum of the 4 products of its bytes: 8 int32 lanes whose sum is the block's dot product.
inline __m256i block_dot(__m256i abs_w, __m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// The combined scales of up to 8 consecutive blocks: s[j] = f16(dw[j]) * dx[j] (one f32 rounding; 0 beyond count).
// dw may be unaligned (a memory-mapped scale plane).
inline __m256 scales8(const uint8_t* dw, const float* dx, int64_t count) {
    if (count == 8)
        return _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(dw))),
                             _mm256_loadu_ps(dx));
    alignas(16) uint16_t h[8] = {};
    alignas(32) float f[8] = {};
    std::memcpy(h, dw, size_t(count) * 2);
    std::memcpy(f, dx, size_t(count) * 4);
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h))), _mm256_load_ps(f));
}

// The weight planes of one group of kRows rows, rs rows apart (gemm.h, q8_row_step): int8 rows of K bytes, f16
// scale rows of nb * 2 bytes.
struct Q8Rows {
    const int8_t* q;
    const uint8_t* d;
    int64_t K, nb, rs;
};

// X x rows (1 or 2) against kRows weight rows (out[m * ldo + r * rs]); prefetch: the rows kRows * rs further on, the
// next group of this row order. The combined scales of a chunk of blocks are formed first (vcvtph2ps of
// 8 weight scales times 8 x scales) into a stack array, from which each block broadcasts its own (a load, not a
// shuffle); the block loop then has a fixed shape with every accumulator in a register.
constexpr int64_t kScaleChunk = 64;  // blocks (2048 weights) per chunk of combined scales: 2 KiB of stack at X = 2

template <int X>
void q8_rows4(float* out, int64_t ldo, const int8_t* xq, const float* xd, Q8Rows w, bool prefetch) {
    static_assert(X == 1 || X == 2, "one or two rows of x");
    const size_t ldw = size_t(w.K) * size_t(w.rs), lds = size_t(w.nb) * 2 * size_t(w.rs);
    // One accumulator array per x row, each indexed only by the weight row: GCC keeps them in registers then.
    __m256 acc0[kRows], acc1[kRows];
    for (int r = 0; r < kRows; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    alignas(32) float s[X][kRows][kScaleChunk];
    for (int64_t c0 = 0; c0 < w.nb; c0 += kScaleChunk) {
        const int64_t cn = std::min(kScaleChunk, w.nb - c0);
        for (int r = 0; r < kRows; ++r) {
            const uint8_t* dw = w.d + r * lds + size_t(c0) * 2;
            // The next group's scales, as far ahead as its int8 rows (a stream 1/16 as long).
            if (prefetch)
                for (int64_t j = 0; j < cn * 2; j += 64)
                    _mm_prefetch(reinterpret_cast<const char*>(dw + kRows * lds + size_t(j)), _MM_HINT_T0);
            for (int m = 0; m < X; ++m)
                for (int64_t j = 0; j < cn; j += 8)
                    _mm256_store_ps(s[m][r] + j,
                                    scales8(dw + j * 2, xd + m * w.nb + c0 + j, std::min<int64_t>(8, cn - j)));
        }
        const int8_t* xc = xq + c0 * 32;
        const int8_t* wc = w.q + c0 * 32;
        for (int64_t j = 0; j < cn; ++j) {
            const __m256i x0 = load32(xc + j * 32);
            const __m256i x1 = X == 2 ? load32(xc + w.K + j * 32) : x0;
            for (int r = 0; r < kRows; ++r) {
                const int8_t* p = wc + r * ldw + size_t(j) * 32;
                // Every block, so that the body has no branch: a 64-byte line is asked for twice, the second time
                // while it is already on its way.
                if (prefetch) prefetch_next_group(reinterpret_cast<const uint8_t*>(p), ldw);
                const __m256i wv = load32(p);
                const __m256i aw = _mm256_sign_epi8(wv, wv);
                acc0[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(aw, wv, x0)), _mm256_broadcast_ss(&s[0][r][j]),
                                          acc0[r]);
                if (X == 2)
                    acc1[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(aw, wv, x1)),
                                              _mm256_broadcast_ss(&s[X - 1][r][j]), acc1[r]);
            }
        }
    }
    alignas(16) float sums[2][kRows];
    _mm_store_ps(sums[0], hsum4(acc0[0], acc0[1], acc0[2], acc0[3]));
    if (X == 2) _mm_store_ps(sums[1], hsum4(acc1[0], acc1[1], acc1[2], acc1[3]));
    for (int m = 0; m < X; ++m)
        for (int r = 0; r < kRows; ++r) out[m * ldo + r * w.rs] = sums[m][r];
}

// One x row against one weight row (the N % 4 tail).
float q8_row1(const int8_t* xq, const float* xd, const int8_t* wq, const uint8_t* dw, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    alignas(32) float s[8];
    for (int64_t b0 = 0; b0 < nb; b0 += 8) {
        const int64_t count = std::min<int64_t>(8, nb - b0);
        _mm256_store_ps(s, scales8(dw + b0 * 2, xd + b0, count));
        for (int64_t j = 0; j < count; ++j) {
            const int64_t k = (b0 + j) * 32;
            const __m256i wv = load32(wq + k);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(_mm256_sign_epi8(wv, wv), wv, load32(xq + k))),
                                  _mm256_broadcast_ss(&s[j]), acc);
        }
    }
    return hsum(acc);
}

void gemv_q8(float* out, int64_t ldo, const int8_t* xq, const float* xd, int64_t M, int64_t K, Weight w, int64_t n0,
             int64_t n1) {
    const int64_t nb = K / 32;
    const auto* q = static_cast<const int8_t*>(w.data);
    const auto* d = static_cast<const uint8_t*>(w.scales);
    // All rows of x against the group of rows from n on.
    auto group = [&](int64_t n, int64_t rs, bool prefetch) {
        const Q8Rows rows{q + n * K, d + n * nb * 2, K, nb, rs};
        float* o = out + (n - n0);
        int64_t m = 0;
        for (; m + 2 <= M; m += 2, prefetch = false)
            q8_rows4<2>(o + m * ldo, ldo, xq + m * K, xd + m * nb, rows, prefetch);
        if (m < M) q8_rows4<1>(o + m * ldo, ldo, xq + m * K, xd + m * nb, rows, prefetch);
    };
    const int64_t rs = q8_row_step(K), span = kRows * rs;
    int64_t n = n0;
    // Groups rs rows apart, rs of them per span; then the rest in plain groups.
    for (; n + span <= n1; n += span)
        for (int64_t i = 0; i < rs; ++i) group(n + i, rs, n + 2 * span <= n1);
    for (; n + kRows <= n1; n += kRows) group(n, 1, n + 2 * kRows <= n1);
    for (; n < n1; ++n)
        for (int64_t m = 0; m < M; ++m)
            out[m * ldo + (n - n0)] = q8_row1(xq + m * K, xd + m * nb, q + n * K, d + n * nb * 2, nb);
}

// ---- Q4 (core/quant.h). A group is 16 bytes of nibbles: byte j holds element j (low) and j + 16 (high). One 32-byte
// load takes 2 groups; masking and a 16-bit shift split it into their elements 0-15 and 16-31, which meet x reordered
// the same way (q4_reorder_x): vpmaddubsw takes the nibbles as its unsigned operand and x as the signed one, pairs
// summed to int16, the low and high halves added (<= 4 * 15 * 127 per lane). Three vphaddw reduce the 4 pairs of a
// super-block to its 8 group sums (<= 16 * 15 * 127 < 2^15 per int16 lane, no wrap) in the lane order kQ4Order (0,
// 4, 2, 6, 1, 5, 3, 7: pairs 0 and 2, 1 and 3 added first), and vpmaddwd by ones to the 8 exact int32 dots (<= 32 *
// 15 * 127, exact in f32). The header is decoded in that order (q4simd::header_scales_ordered) once per super-block
// and weight row, dx and the x sums come in it (q4_reorder_x), so that one FMA by f32(a_b dx_b) and one FNMADD by m_b
// and s_b per super-block finish it: about 60 instructions per super-block and row, for 144 bytes.

// The two planes of R weight rows, rs rows apart (gemm.h, q4_row_step): nibble rows of K / 2 bytes, header rows of
// K / 256 * 16.
struct Q4Rows {
    const uint8_t* q;
    const uint8_t* h;
    int64_t K, rs;
};

// f(integral_constant<int, i>) for i < N: the loops over rows, pairs and rows of x unrolled with constant indices, so
// that the accumulators and nibble vectors stay in registers (GCC keeps arrays indexed by a loop variable on the
// stack when the loop body is too large to unroll on its own).
template <class F, int... I>
inline void unroll_impl(F& f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}
template <int N, class F>
inline void unroll(F&& f) {
    unroll_impl(f, std::make_integer_sequence<int, N>{});
}

// R weight rows (out[m * ldo + r * rs]) against X rows of x (stride K, and K / 32 for xd and xs). Prefetch: the rows
// kRows * rs further on, the next group of this row order.
template <int R, int X, bool Prefetch>
void q4_rows(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, Q4Rows w) {
    const int64_t K = w.K, ns = K / 256, nb = K / 32;
    const size_t ldw = size_t(K / 2) * size_t(w.rs), ldh = size_t(ns) * 16 * size_t(w.rs);
    const __m256i low4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[X][R];
    for (int m = 0; m < X; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
    for (int64_t j = 0; j < ns; ++j) {
        unroll<R>([&](auto rc) {
            constexpr int r = decltype(rc)::value;
            const uint8_t* pw = w.q + r * ldw + size_t(j) * 128;
            const uint8_t* ph = w.h + r * ldh + size_t(j) * 16;
            if constexpr (Prefetch) {
                _mm_prefetch(reinterpret_cast<const char*>(pw + kRows * ldw), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(pw + kRows * ldw + 64), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(ph + kRows * ldh), _MM_HINT_T0);
            }
            // Per row of x the 4 pairs of groups (2p, 2p + 1), reduced as they come: hadd(hadd(s0, s2), hadd(s1, s3)).
            __m256i s0[X], s1[X], s02[X], dots[X];
            unroll<4>([&](auto pc) {
                constexpr int p = decltype(pc)::value;
                const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pw + p * 32));
                const __m256i lo = _mm256_and_si256(v, low4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
                unroll<X>([&](auto mc) {
                    constexpr int m = decltype(mc)::value;
                    // x in q4_reorder_x's order: pair p's first halves at (p / 2) * 128 + (p % 2) * 32, seconds 64 on.
                    const int8_t* q = xq + m * K + j * 256 + (p / 2) * 128 + (p % 2) * 32;
                    const __m256i sp = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load32(q)),
                                                        _mm256_maddubs_epi16(hi, load32(q + 64)));
                    if constexpr (p == 0)
                        s0[m] = sp;
                    else if constexpr (p == 1)
                        s1[m] = sp;
                    else if constexpr (p == 2)
                        s02[m] = _mm256_hadd_epi16(s0[m], sp);
                    else
                        dots[m] = _mm256_madd_epi16(_mm256_hadd_epi16(s02[m], _mm256_hadd_epi16(s1[m], sp)), ones);
                });
            });
            __m256 a, mins;
            q4simd::header_scales_ordered(ph, &a, &mins);
            unroll<X>([&](auto mc) {
                constexpr int m = decltype(mc)::value;
                const float* xb = xd + m * nb + j * 8;
                acc[m][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[m]), _mm256_mul_ps(a, _mm256_loadu_ps(xb)),
                                            acc[m][r]);
                acc[m][r] = _mm256_fnmadd_ps(mins, _mm256_loadu_ps(xs + m * nb + j * 8), acc[m][r]);
            });
        });
    }
    for (int m = 0; m < X; ++m) {
        if constexpr (R == 4) {
            alignas(16) float sums[4];
            _mm_store_ps(sums, hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]));
            for (int r = 0; r < R; ++r) out[m * ldo + r * w.rs] = sums[r];
        } else {
            for (int r = 0; r < R; ++r) out[m * ldo + r * w.rs] = hsum(acc[m][r]);
        }
    }
}

// All rows of x against R weight rows: 2 at a time, then 1.
template <int R>
void q4_all_x(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, int64_t M, Q4Rows w,
              bool prefetch) {
    const int64_t nb = w.K / 32;
    int64_t m = 0;
    // Only the first pass over these rows streams them from memory; later passes hit L1/L2.
    if (M >= 2) {
        if (prefetch)
            q4_rows<R, 2, true>(out, ldo, xq, xd, xs, w);
        else
            q4_rows<R, 2, false>(out, ldo, xq, xd, xs, w);
        for (m = 2; m + 2 <= M; m += 2)
            q4_rows<R, 2, false>(out + m * ldo, ldo, xq + m * w.K, xd + m * nb, xs + m * nb, w);
        prefetch = false;
    }
    if (m < M) {
        if (prefetch)
            q4_rows<R, 1, true>(out + m * ldo, ldo, xq + m * w.K, xd + m * nb, xs + m * nb, w);
        else
            q4_rows<R, 1, false>(out + m * ldo, ldo, xq + m * w.K, xd + m * nb, xs + m * nb, w);
    }
}

void gemv_q4(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, int64_t M, int64_t K,
             Weight w, int64_t n0, int64_t n1) {
    const auto* q = static_cast<const uint8_t*>(w.data);
    const auto* h = static_cast<const uint8_t*>(w.scales);
    const size_t row_q = size_t(K / 2), row_h = size_t(K / 256) * 16;
    auto rows = [&](int64_t n, int64_t rs) { return Q4Rows{q + size_t(n) * row_q, h + size_t(n) * row_h, K, rs}; };
    const int64_t rs = q4_row_step(K), span = kRows * rs;
    int64_t n = n0;
    // Groups rs rows apart, rs of them per span; then the rest in plain groups, then single rows.
    for (; n + span <= n1; n += span)
        for (int64_t i = 0; i < rs; ++i)
            q4_all_x<kRows>(out + (n + i - n0), ldo, xq, xd, xs, M, rows(n + i, rs), n + 2 * span <= n1);
    for (; n + kRows <= n1; n += kRows)
        q4_all_x<kRows>(out + (n - n0), ldo, xq, xd, xs, M, rows(n, 1), n + 2 * kRows <= n1);
    for (; n < n1; ++n) q4_all_x<1>(out + (n - n0), ldo, xq, xd, xs, M, rows(n, 1), false);
}

}  // namespace

void gemv_avx2(float* out, int64_t ldo, const GemvX& x, int64_t M, int64_t K, Weight w, int64_t n0, int64_t n1) {
    switch (w.dtype) {
        case QWEN3VL_DTYPE_Q8:
            if (x.q8 == Q8Gemv::Avx512Vnni) return gemv_q8_avx512(out, ldo, x.q, x.d, M, K, w, n0, n1);
            return gemv_q8(out, ldo, x.q, x.d, M, K, w, n0, n1);
        case QWEN3VL_DTYPE_Q4:
            if (x.q8 == Q8Gemv::Avx512Vnni) return gemv_q4_avx512(out, ldo, x.q, x.d, x.s, M, K, w, n0, n1);
            return gemv_q4(out, ldo, x.q, x.d, x.s, M, K, w, n0, n1);
        case QWEN3VL_DTYPE_BF16: return gemv<QWEN3VL_DTYPE_BF16>(out, ldo, x.f, M, K, w.data, n0, n1);
        case QWEN3VL_DTYPE_F16: return gemv<QWEN3VL_DTYPE_F16>(out, ldo, x.f, M, K, w.data, n0, n1);
        default: return gemv<QWEN3VL_DTYPE_F32>(out, ldo, x.f, M, K, w.data, n0, n1);
    }
}

void gemv_quantize_x_avx2(int8_t* q, float* d, const float* x, int64_t K) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    const __m256i lim = _mm256_set1_epi32(127), neg_lim = _mm256_set1_epi32(-127);
    // vpackssdw / vpacksswb interleave 128-bit lanes: dwords 0, 4, 1, 5, 2, 6, 3, 7 restore the element order.
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < K / 32; ++b) {
        const float* xb = x + b * 32;
        __m256 v[4], amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            const __m256 a = _mm256_and_ps(v[i], abs_mask);
            amax = _mm256_max_ps(amax, a);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ));  // infinity or NaN (max_ps drops NaNs)
        }
        const float dx = _mm256_movemask_ps(bad) ? std::numeric_limits<float>::quiet_NaN() : avx2::hmax(amax) / 127.0f;
        d[b] = dx;
        if (!(dx > 0.0f)) {  // zero (all x zero, or so small that max / 127 underflows) or NaN: q = 0
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * 32), _mm256_setzero_si256());
            continue;
        }
        const __m256 dv = _mm256_set1_ps(dx);
        __m256i qi[4];
        for (int i = 0; i < 4; ++i)  // vcvtps2dq rounds by MXCSR: to nearest even, as nearbyint
            qi[i] = _mm256_max_epi32(neg_lim, _mm256_min_epi32(lim, _mm256_cvtps_epi32(_mm256_div_ps(v[i], dv))));
        const __m256i packed =
            _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * 32), _mm256_permutevar8x32_epi32(packed, order));
    }
}

void gemv_permute_x_avx2(float* dst, const float* src, int64_t K) {
    const int64_t K16 = K & ~int64_t(15);
    for (int64_t k = 0; k < K16; k += 16) {
        const __m256 a = _mm256_loadu_ps(src + k), b = _mm256_loadu_ps(src + k + 8);
        // shuffle_ps picks per 128-bit lane: a0 a2 b0 b2 | a4 a6 b4 b6; permute4x64 restores the element order.
        const __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        const __m256 odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(dst + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xd8)));
        _mm256_storeu_ps(dst + k + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), 0xd8)));
    }
    for (int64_t k = K16; k < K; ++k) dst[k] = src[k];
}

}  // namespace cpu
}  // namespace qwen3vl
