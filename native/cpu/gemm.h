// Linear layers on the CPU: out[M, N] = x[M, K] * W[N, K]^T (+ bias), and the fused gated-MLP half
// out = silu(x Wg^T) * (x Wu^T). x and out are f32 row-major; W is f32, f16, bf16, Q8 (core/quant.h: int8 blocks
// of 32 along a row with an f16 scale each; K a multiple of 32) or Q4 (super-blocks of 256: 8 groups of 32 unsigned
// nibbles with a 6-bit scale and min under f16 d and dmin; K a multiple of 256), row-major and may be unaligned (a
// view into a memory-mapped checkpoint).
//
// Two regimes, chosen by M:
//  - decode (M <= kGemvMaxRows): memory-bound GEMV. Each weight row is streamed once for all M rows of x,
//    converted in registers and FMA'd into several accumulators; N is split across the thread pool.
//  - prefill / vision: BLIS-style GEMM. Per tile of out, blocks of W (KC x NT) and of x (MT x KC) are packed into
//    f32 micro-panels (which converts W once per block and fixes alignment), and a 6x16 register-blocked FMA
//    micro-kernel runs over them; tiles of out are the parallel tasks.
// Q8 and Q4 weights: the GEMV quantizes x too (per row and block of 32, once per call) and takes int8 dot products,
// so it reads 1.06 (Q8) or 0.5625 (Q4) bytes per weight instead of 2; the GEMM dequantizes W exactly into the same
// f32 micro-panels.
// CpuKernels::Scalar runs plain C++ (any CPU; QWEN3VL_CPU_KERNELS=scalar forces it): per chunk of N, weight rows
// widened to f32 (Q8, Q4: dequantized, x not quantized) and dotted with every row of x. It is the portable reference.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu_features.h"
#include "qwen3vl.h"
#include "thread_pool.h"
#include "weight.h"

namespace qwen3vl {
namespace cpu {

// The int8 GEMV of Q8 and Q4 weights under CpuKernels::Avx2 comes in two instruction sets: AVX2 (vpmaddubsw, 32
// weights an instruction; gemv_avx2.cpp) and AVX-512 VNNI (vpdpbusd, 64; gemv_avx512.cpp, where
// cpu_has_avx512_vnni()).
// q8_gemv_default() is the best this CPU has, lowered to AVX2 by the environment variable QWEN3VL_CPU_Q8_GEMV=avx2
// (decided once per process); the tests run every one the CPU has. Both give the same result up to the order of
// the f32 sums.
enum class Q8Gemv { Avx2, Avx512Vnni };
Q8Gemv q8_gemv_default();
const char* q8_gemv_name(Q8Gemv g);

// out[M, N] = x[M, K] * w[N, K]^T + bias[N] (bias.data may be NULL). out must not overlap x or w.
// kernels selects the code path (tests run both); Avx2 requires a CPU with AVX2, FMA and F16C. q8 picks the int8
// GEMV's instruction set (Avx512Vnni requires cpu_has_avx512_vnni()).
void linear(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w,
            Weight bias, CpuKernels kernels = cpu_kernels(), Q8Gemv q8 = q8_gemv_default());

// out[M, N] = silu(x * gate^T) * (x * up^T), gate and up [N, K].
void linear_swiglu(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight gate,
                   Weight up, CpuKernels kernels = cpu_kernels(), Q8Gemv q8 = q8_gemv_default());

// Up to this many rows of x the AVX2 path runs as GEMV (weights streamed once); above, as packed GEMM. At M = 8
// the GEMV still beats packing W (q_proj 2048x2048 bf16, one thread: 1.6 ms against 2.7 ms).
constexpr int64_t kGemvMaxRows = 8;

// ---- AVX2 + FMA + F16C kernels (gemv_avx2.cpp, gemm_avx2.cpp, compiled with those flags). Call only when
// cpu_kernels() allows. They compute plain products; gemm.cpp splits the work and applies bias / swiglu.

// x as the GEMV of one weight dtype reads it, prepared once per call (gemm.cpp): f32 rows of stride K (for bf16
// weights in the layout of gemv_permute_x_avx2), or for Q8 and Q4 weights the rows quantized by gemv_quantize_x_avx2
// (for Q4 reordered by q4_reorder_x, with the blocks' sums).
struct GemvX {
    const float* f = nullptr;   // f32 / f16 / bf16 weights: [M, K]
    const int8_t* q = nullptr;  // Q8, Q4 weights: [M, K] (Q4: in q4_reorder_x's order)
    const float* d = nullptr;   // Q8, Q4 weights: [M, K / 32], the block scales dx (Q4: in q4_reorder_x's order)
    const float* s = nullptr;   // Q4 weights: [M, K / 32], f32(dx_b * sum of qx over block b), in that order
    Q8Gemv q8 = Q8Gemv::Avx2;   // Q8, Q4 weights: the int8 GEMV that runs
};

// out[m * ldo + n - n0] = dot(x row m, w row n) for m < M, n in [n0, n1). For Q8 weights the dot is
// sum_b f32(f16 dw[n, b] * dx[m, b]) * sum_{k in block b} qw[n, k] qx[m, k], the block sums exact in int32. For Q4
// weights, with group b's a_b = f16(d) sc_b and m_b = f16(dmin) mn_b (exact in f32), it is
//     sum_b f32(a_b dx[m, b]) * sum_{k in b} q[n, k] qx[m, k]  -  sum_b m_b s[m, b]     (GemvX::s for s),
// the nibble dots exact in int32, the terms summed in f32 in the kernel's order (each term goes through at most
// K / 32 + 6 roundings, its own product's included).
void gemv_avx2(float* out, int64_t ldo, const GemvX& x, int64_t M, int64_t K, Weight w, int64_t n0, int64_t n1);
// One row of x (K a multiple of 32) quantized for the Q8 and Q4 GEMVs, per block b of 32: d[b] = max|x_b| / 127
// (an IEEE f32 division), q = nearbyint(x / d[b]) (f32 division, round to nearest even) clamped to +-127, q = 0
// where d[b] == 0. |x - d q| <= d / 2 (+ the division's rounding, u |x|). A block holding a NaN or an infinity gets
// d[b] = NaN and q = 0, so that the row's outputs are NaN as with dense weights.
void gemv_quantize_x_avx2(int8_t* q, float* d, const float* x, int64_t K);
// The order in which the Q8 GEMVs take weight rows: kRows = 4 rows at a time (four streams), those rows rs apart,
// so that for rows shorter than 4 KiB (K < 4096) each stream runs in a page of its own, as bf16 rows of K = 2048 do.
// Two streams through one page (consecutive 2 KiB rows) left the single-thread read rate 25% below bf16's at
// K = 2048 while equal at K = 4096 and 6144 (min of 15 alternating runs). rs rows of a group are taken one group
// after the other: rows n + i + j rs for j < 4, for i < rs.
inline int64_t q8_row_step(int64_t K) { return K >= 4096 ? 1 : K >= 512 ? (4096 + K - 1) / K : 8; }
// The same for the Q4 GEMVs, whose nibble rows are K / 2 bytes.
inline int64_t q4_row_step(int64_t K) { return q8_row_step(K / 2); }
// x quantized for the Q4 GEMV: per 128 elements (4 blocks), the first halves of the 4 blocks (16 bytes each) then
// their second halves, dst[128u + 16j + i] = src[128u + 32j + i] and dst[128u + 64 + 16j + i] = src[128u + 32j + 16 +
// i] (j < 4, i < 16), so that one load of the low (high) nibbles of 2 or 4 consecutive groups meets one load of x.
// The block scales and sums per super-block (8 blocks) in the lane order kQ4Order in which the GEMVs reduce groups:
// d_out[8t + i] = d[8t + kQ4Order[i]] and s[8t + i] = f32(d_out[8t + i] * sum of that block's 32 q) (the sum exact;
// NaN where d is). K a multiple of 256.
constexpr int kQ4Order[8] = {0, 4, 2, 6, 1, 5, 3, 7};
void q4_reorder_x(int8_t* dst, float* d_out, float* s, const int8_t* src, const float* d, int64_t K);

// The AVX-512 VNNI int8 GEMV (gemv_avx512.cpp), out as gemv_avx2's for Q8 weights; gemv_avx2 calls it for
// GemvX::q8 == Avx512Vnni.
void gemv_q8_avx512(float* out, int64_t ldo, const int8_t* xq, const float* xd, int64_t M, int64_t K, Weight w,
                    int64_t n0, int64_t n1);
// And for Q4 weights (x as GemvX holds it for them).
void gemv_q4_avx512(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xs, int64_t M, int64_t K,
                    Weight w, int64_t n0, int64_t n1);
// bf16 weights are widened two at a time (even elements by a shift, odd ones by a mask), which needs x's
// even and odd elements of every 16 grouped: dst[16b + i] = src[16b + 2i], dst[16b + 8 + i] = src[16b + 2i + 1].
// The K % 16 tail is copied unchanged.
void gemv_permute_x_avx2(float* dst, const float* src, int64_t K);

// One tile of the GEMM: rows [m0, m1) and columns [n0, n1) of out, over all of K.
struct GemmTile {
    const float* x = nullptr;  // [M, K]
    int64_t K = 0;
    Weight w;              // [N, K]; for swiglu the gate
    Weight up;             // swiglu only (data NULL for linear)
    const float* bias = nullptr;  // f32 [N] or NULL (linear only)
    float* out = nullptr;      // [M, N], leading dimension ldo
    int64_t ldo = 0;
    int64_t m0 = 0, m1 = 0, n0 = 0, n1 = 0;
};
// Largest tile gemm_tile_avx2 accepts and the f32 scratch it needs (per thread, 64-byte aligned).
constexpr int64_t kGemmTileRows = 144;  // multiple of the micro-kernel's 6 rows
constexpr int64_t kGemmTileCols = 256;  // multiple of the micro-kernel's 16 columns
size_t gemm_scratch_floats();
void gemm_tile_avx2(const GemmTile& tile, float* scratch);

// out[i] = silu(g[i]) * u[i]; out may alias g or u.
void silu_mul_avx2(float* out, const float* g, const float* u, size_t n);

}  // namespace cpu
}  // namespace qwen3vl
