// Prefill / vision GEMM, BLIS style. Built with AVX2 + FMA + F16C; called only after CPU detection.
//
// For one tile of out (<= kGemmTileRows x kGemmTileCols) and each KC-deep slice of K:
//  - pack x[MT, KC] into 6-row micro-panels (A[k][6]) and W[NT, KC] into 16-column micro-panels (B[k][16]), both by
//    8x8 register transposes since x and W are both K-contiguous; W is widened (Q8, Q4: dequantized) to f32 here,
//    once per block;
//  - for each B micro-panel (16 KiB, stays in L1) run the 6x16 micro-kernel over every A micro-panel (from L2):
//    12 accumulators, per k two B loads, six broadcasts and twelve FMAs.
// KC = 256 keeps one A and one B micro-panel (6 + 16 KiB) within the 32 KiB L1 of the targets (Zen 2/3, Skylake and
// later); the tile's packed A and B (144 + 256 KiB) fit a 512 KiB L2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "dtype.h"
#include "gemm.h"
#include "q4_simd.h"
#include "simd_avx2.h"

namespace qwen3vl {
namespace cpu {

namespace {

constexpr int64_t MR = 6, NR = 16, KC = 256;
static_assert(kGemmTileRows % MR == 0 && kGemmTileCols % NR == 0, "tile must be whole micro-panels");

constexpr size_t kApackFloats = size_t(kGemmTileRows * KC) + 16;  // +16: the overlapping stores of pack_a
constexpr size_t kBpackFloats = size_t(KC * kGemmTileCols);
constexpr size_t kGateFloats = size_t(kGemmTileRows * kGemmTileCols);

inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <qwen3vl_dtype D>
inline __m256 load8(const uint8_t* p) {
    if (D == QWEN3VL_DTYPE_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
    if (D == QWEN3VL_DTYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
}

// B micro-panels: dst[p * kc * 16 + k * 16 + j] = W[n0 + 16p + j][k0 + k] as f32, zero for columns >= nc.
template <qwen3vl_dtype D>
void pack_b(float* dst, const uint8_t* w, int64_t K, int64_t n0, int64_t nc, int64_t k0, int64_t kc) {
    constexpr size_t es = D == QWEN3VL_DTYPE_F32 ? 4 : 2;
    const size_t ldw = size_t(K) * es;
    const int64_t kc8 = kc & ~int64_t(7);
    for (int64_t p = 0; p * NR < nc; ++p) {
        float* panel = dst + p * kc * NR;
        for (int64_t half = 0; half < 2; ++half) {
            const int64_t r0 = p * NR + half * 8;
            const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(8, nc - r0));
            const uint8_t* src = w + size_t(n0 + r0) * ldw + size_t(k0) * es;
            for (int64_t k = 0; k < kc8; k += 8) {
                __m256 r[8];
                for (int64_t i = 0; i < 8; ++i)
                    r[i] = i < rows ? load8<D>(src + size_t(i) * ldw + size_t(k) * es) : _mm256_setzero_ps();
                transpose8(r);
                for (int64_t j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (k + j) * NR + half * 8, r[j]);
            }
            for (int64_t k = kc8; k < kc; ++k)
                for (int64_t i = 0; i < 8; ++i)
                    panel[k * NR + half * 8 + i] = i < rows ? load_f32<D>(src + size_t(i) * ldw + size_t(k) * es) : 0.0f;
        }
    }
}

// pack_b for Q8 weights (core/quant.h): 8 int8 -> vpmovsxbd -> vcvtdq2ps, times the f16 scale of their block, which
// is the exact f32 weight (an 11-bit scale times an 8-bit integer) as dequantize_q8 gives it, so the micro-kernel
// and its error bound are those of an f32 weight. The K slices are whole blocks (KC and k0 multiples of 32, K too),
// so every 8 columns lie in one block; a half-panel's scales for the slice (<= KC / 32 per row) are widened first.
static_assert(KC % 32 == 0 && KC / 32 <= 8, "a K slice is at most 8 whole Q8 blocks");

void pack_b_q8(float* dst, const int8_t* w, const uint8_t* scales, int64_t K, int64_t n0, int64_t nc, int64_t k0,
               int64_t kc) {
    const size_t nb = size_t(K) / 32;
    const int64_t kc8 = kc & ~int64_t(7), blocks = (kc + 31) / 32;
    for (int64_t p = 0; p * NR < nc; ++p) {
        float* panel = dst + p * kc * NR;
        for (int64_t half = 0; half < 2; ++half) {
            const int64_t r0 = p * NR + half * 8;
            const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(8, nc - r0));
            const int8_t* src = w + size_t(n0 + r0) * size_t(K) + size_t(k0);
            alignas(32) float sc[8][8];  // [row][block of the slice]
            for (int64_t i = 0; i < rows; ++i) {
                alignas(16) uint16_t h[8] = {};
                std::memcpy(h, scales + (size_t(n0 + r0 + i) * nb + size_t(k0 / 32)) * 2, size_t(blocks) * 2);
                _mm256_store_ps(sc[i], _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h))));
            }
            for (int64_t k = 0; k < kc8; k += 8) {
                __m256 r[8];
                for (int64_t i = 0; i < 8; ++i) {
                    if (i >= rows) {
                        r[i] = _mm256_setzero_ps();
                        continue;
                    }
                    const int8_t* q = src + size_t(i) * size_t(K) + size_t(k);
                    const __m256i qi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
                    r[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(qi), _mm256_broadcast_ss(&sc[i][k / 32]));
                }
                transpose8(r);
                for (int64_t j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (k + j) * NR + half * 8, r[j]);
            }
            for (int64_t k = kc8; k < kc; ++k)  // not reached while K is whole blocks; kept for any kc
                for (int64_t i = 0; i < 8; ++i)
                    panel[k * NR + half * 8 + i] =
                        i < rows ? sc[i][k / 32] * float(src[size_t(i) * size_t(K) + size_t(k)]) : 0.0f;
        }
    }
}

// pack_b for Q4 weights (core/quant.h): 8 nibbles -> vpmovzxbd (then a shift by 4 for elements 16-31 of a group) ->
// vcvtdq2ps, then (d sc) * q - (dmin mn) by a multiplication and a subtraction, each rounded as dequantize_q4 rounds
// them (no FMA: the value must be dequantize_q4's exactly, so that the micro-kernel and its error bound are those of
// an f32 weight). K slices are whole super-blocks (KC a multiple of 256, K too), so 8 consecutive columns lie in one
// group: for column offset o in the group, bytes o % 16 to o % 16 + 7, low nibbles for o < 16, high ones above.
static_assert(KC % 256 == 0, "a K slice is whole Q4 super-blocks");

void pack_b_q4(float* dst, const uint8_t* nib, const uint8_t* headers, int64_t K, int64_t n0, int64_t nc, int64_t k0,
               int64_t kc) {
    const size_t row_q = size_t(K) / 2, row_h = size_t(K) / 256 * 16;
    const __m256i low4 = _mm256_set1_epi32(15);
    const int64_t groups = kc / 32;  // k0 is a multiple of 256: the slice starts a super-block
    for (int64_t p = 0; p * NR < nc; ++p) {
        float* panel = dst + p * kc * NR;
        for (int64_t half = 0; half < 2; ++half) {
            const int64_t r0 = p * NR + half * 8;
            const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(8, nc - r0));
            alignas(32) float a[8][8], m[8][8];  // [row][group] of the current super-block
            const uint8_t* src[8] = {};
            for (int64_t g = 0; g < groups; ++g) {
                const int64_t kg = k0 + g * 32;  // the group's first column
                for (int64_t i = 0; i < rows; ++i) {
                    const size_t n = size_t(n0 + r0 + i);
                    if (kg % 256 == 0) {
                        __m256 av, mv;
                        q4simd::header_scales(headers + n * row_h + size_t(kg / 256) * 16, &av, &mv);
                        _mm256_store_ps(a[i], av);
                        _mm256_store_ps(m[i], mv);
                    }
                    src[i] = nib + n * row_q + size_t(kg / 2);
                }
                const int64_t gi = (kg % 256) / 32;
                for (int64_t o = 0; o < 32; o += 8) {
                    __m256 r[8];
                    for (int64_t i = 0; i < 8; ++i) {
                        if (i >= rows) {
                            r[i] = _mm256_setzero_ps();
                            continue;
                        }
                        __m256i q = _mm256_cvtepu8_epi32(
                            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src[i] + (o % 16))));
                        q = o < 16 ? _mm256_and_si256(q, low4) : _mm256_srli_epi32(q, 4);
                        r[i] = _mm256_sub_ps(_mm256_mul_ps(_mm256_broadcast_ss(&a[i][gi]), _mm256_cvtepi32_ps(q)),
                                             _mm256_broadcast_ss(&m[i][gi]));
                    }
                    transpose8(r);
                    for (int64_t j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (g * 32 + o + j) * NR + half * 8, r[j]);
                }
            }
        }
    }
}

// A micro-panels: dst[p * kc * 6 + k * 6 + i] = x[m0 + 6p + i][k0 + k], zero for rows >= mc. Each transposed
// column is stored 8 wide; its two extra floats are overwritten by the next store (the last ones land in padding).
void pack_a(float* dst, const float* x, int64_t K, int64_t m0, int64_t mc, int64_t k0, int64_t kc) {
    const int64_t kc8 = kc & ~int64_t(7);
    for (int64_t p = 0; p * MR < mc; ++p) {
        float* panel = dst + p * kc * MR;
        const int64_t rows = std::min<int64_t>(MR, mc - p * MR);
        const float* src = x + (m0 + p * MR) * K + k0;
        for (int64_t k = 0; k < kc8; k += 8) {
            __m256 r[8];
            for (int64_t i = 0; i < 8; ++i) r[i] = i < rows ? _mm256_loadu_ps(src + i * K + k) : _mm256_setzero_ps();
            transpose8(r);
            for (int64_t j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (k + j) * MR, r[j]);
        }
        for (int64_t k = kc8; k < kc; ++k)
            for (int64_t i = 0; i < MR; ++i) panel[k * MR + i] = i < rows ? src[i * K + k] : 0.0f;
    }
}

// C[6, 16] (= or +=) A-panel * B-panel over kc. For edge tiles C is a local buffer and the caller copies.
inline void kernel_6x16(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, bool accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8);
        __m256 a = _mm256_broadcast_ss(A + 0);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(A + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(A + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(A + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(A + 4);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(A + 5);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
        A += MR;
        B += NR;
    }
    const __m256 c[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < MR; ++i) {
        float* row = C + i * ldc;
        if (accumulate) {
            _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), c[i][0]));
            _mm256_storeu_ps(row + 8, _mm256_add_ps(_mm256_loadu_ps(row + 8), c[i][1]));
        } else {
            _mm256_storeu_ps(row, c[i][0]);
            _mm256_storeu_ps(row + 8, c[i][1]);
        }
    }
}

// C[mc, nc] (= or +=) packed A * packed B.
void macro_kernel(const float* Ap, const float* Bp, int64_t mc, int64_t nc, int64_t kc, float* C, int64_t ldc,
                  bool accumulate) {
    for (int64_t jr = 0; jr < nc; jr += NR) {
        const float* B = Bp + jr * kc;
        const int64_t nr = std::min(NR, nc - jr);
        for (int64_t ir = 0; ir < mc; ir += MR) {
            const float* A = Ap + ir * kc;
            const int64_t mr = std::min(MR, mc - ir);
            float* c = C + ir * ldc + jr;
            if (mr == MR && nr == NR) {
                kernel_6x16(kc, A, B, c, ldc, accumulate);
                continue;
            }
            alignas(32) float edge[MR * NR];
            kernel_6x16(kc, A, B, edge, NR, false);
            for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < nr; ++j) c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + edge[i * NR + j];
        }
    }
}

void pack_weight(float* dst, Weight w, int64_t K, int64_t n0, int64_t nc, int64_t k0, int64_t kc) {
    const auto* p = static_cast<const uint8_t*>(w.data);
    switch (w.dtype) {
        case QWEN3VL_DTYPE_Q8:
            return pack_b_q8(dst, static_cast<const int8_t*>(w.data), static_cast<const uint8_t*>(w.scales), K, n0, nc,
                             k0, kc);
        case QWEN3VL_DTYPE_Q4:
            return pack_b_q4(dst, p, static_cast<const uint8_t*>(w.scales), K, n0, nc, k0, kc);
        case QWEN3VL_DTYPE_BF16: return pack_b<QWEN3VL_DTYPE_BF16>(dst, p, K, n0, nc, k0, kc);
        case QWEN3VL_DTYPE_F16: return pack_b<QWEN3VL_DTYPE_F16>(dst, p, K, n0, nc, k0, kc);
        default: return pack_b<QWEN3VL_DTYPE_F32>(dst, p, K, n0, nc, k0, kc);
    }
}


}  // namespace

size_t gemm_scratch_floats() { return kApackFloats + kBpackFloats + kGateFloats; }

void gemm_tile_avx2(const GemmTile& t, float* scratch) {
    const int64_t mt = t.m1 - t.m0, nt = t.n1 - t.n0;
    float* Ap = scratch;
    float* Bp = Ap + kApackFloats;
    float* G = Bp + kBpackFloats;
    const bool swiglu = t.up.data != nullptr;
    float* out = t.out + t.m0 * t.ldo + t.n0;
    for (int64_t pc = 0; pc < t.K; pc += KC) {
        const int64_t kc = std::min(KC, t.K - pc);
        pack_a(Ap, t.x, t.K, t.m0, mt, pc, kc);
        if (swiglu) {
            pack_weight(Bp, t.w, t.K, t.n0, nt, pc, kc);
            macro_kernel(Ap, Bp, mt, nt, kc, G, kGemmTileCols, pc > 0);
            pack_weight(Bp, t.up, t.K, t.n0, nt, pc, kc);
        } else {
            pack_weight(Bp, t.w, t.K, t.n0, nt, pc, kc);
        }
        macro_kernel(Ap, Bp, mt, nt, kc, out, t.ldo, pc > 0);
    }
    for (int64_t i = 0; i < mt; ++i) {
        float* row = out + i * t.ldo;
        if (swiglu) silu_mul_avx2(row, G + i * kGemmTileCols, row, size_t(nt));
        if (t.bias) {
            const float* b = t.bias + t.n0;
            int64_t j = 0;
            for (; j + 8 <= nt; j += 8)
                _mm256_storeu_ps(row + j, _mm256_add_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(b + j)));
            for (; j < nt; ++j) row[j] += b[j];
        }
    }
}

void silu_mul_avx2(float* out, const float* g, const float* u, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 den = _mm256_add_ps(one, avx2::exp(_mm256_sub_ps(_mm256_setzero_ps(), gv)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace cpu
}  // namespace qwen3vl
