// The Q4 arithmetic of the kernels (QWEN3VL_DTYPE_Q4 in qwen3vl.h; core/quant.h), written once for them and for the
// host models of them that the tests run on any machine (tests/native/ops/test_linear.cpp, LinearOpsQ4Reference):
// the decoding of a 16-byte super-block header, one weight as dequantize_q4 computes it (quant.cu, embedding.cu),
// and the GEMV's integer dot product of a group's nibbles with 32 int8 of x (gemv.cu, gemv_blocks_kernel with
// Q4Format). Plain C++ on the host; dp4a on the device (sm_61+).
//
// The GEMV, per group g of a super-block, with x's block of 32 quantized to int8 qx under the f32 scale dx (gemv.cu's
// contract):
//   sum_j w_j dx qx_j = dx (a I - m X),  a = d sc[g], m = dmin mn[g], I = sum_j q_j qx_j, X = sum_j qx_j
// I is exact in int32 (|I| <= 32 * 15 * 127), X is computed once per block of x when x is quantized, and the kernel
// accumulates acc = fma(float(I), a * dx, acc) then acc = fma(-m, dx * X, acc) (group_accumulate below): a and m are
// exact in f32 (an f16 times a 6-bit integer has at most 17 significant bits), so the weights themselves are not
// rounded; each of the two terms is one product and one f32 addition (and dx * X one more product).
#pragma once

#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

#if defined(__CUDACC__)
#define QWEN3VL_Q4_HD __host__ __device__ __forceinline__
#else
#define QWEN3VL_Q4_HD inline
#endif

namespace qwen3vl {
namespace q4arith {

// The header as four little-endian 32-bit words: h[0] = d | dmin << 16 (f16 bits), h[1] and h[2] the bytes
// sc[g] | (mn[g] & 3) << 6 of groups 0-3 and 4-7, h[3] the high 4 bits of mn[g] in nibble g (bytes 12 + g / 2, low
// nibble for even g). The word of h holding group g's scale byte:
QWEN3VL_Q4_HD int scale_word(int g) { return 1 + (g >> 2); }

// Group g's 6-bit scale and min from the words h[scale_word(g)] and h[3] (core/quant.h, q4_group_scale_min).
QWEN3VL_Q4_HD void group_scale_min(unsigned wsc, unsigned wmn, int g, int* sc, int* mn) {
    const unsigned b = wsc >> (8 * (g & 3));
    *sc = int(b & 63u);
    *mn = int((b >> 6) & 3u) | int(((wmn >> (4 * g)) & 15u) << 2);
}

// The same from the header's bytes h[0..15] (any alignment).
QWEN3VL_Q4_HD void group_scale_min(const uint8_t* h, int g, int* sc, int* mn) {
    *sc = h[4 + g] & 63;
    *mn = (h[4 + g] >> 6) | (((h[12 + g / 2] >> (4 * (g & 1))) & 15) << 2);
}

#if defined(__CUDACC__)
// a = d sc[g] and m = dmin mn[g] of a header (bytes, any alignment): exact in f32.
__device__ __forceinline__ void group_a_m(const uint8_t* h, int g, float* a, float* m) {
    const float d = __half2float(__ushort_as_half(static_cast<unsigned short>(h[0] | (h[1] << 8))));
    const float dmin = __half2float(__ushort_as_half(static_cast<unsigned short>(h[2] | (h[3] << 8))));
    int sc, mn;
    group_scale_min(h, g, &sc, &mn);
    *a = __fmul_rn(d, static_cast<float>(sc));
    *m = __fmul_rn(dmin, static_cast<float>(mn));
}

// One weight as core/quant.cpp's dequantize_q4 computes it: (a q) - m, each operation rounded on its own.
__device__ __forceinline__ float weight(float a, unsigned q, float m) {
    return __fsub_rn(__fmul_rn(a, static_cast<float>(q)), m);
}
#endif

// Sum of the four byte products of a and b (signed int8), plus c: dp4a on sm_61+, which every architecture of the
// build has; the same sum on the host.
QWEN3VL_Q4_HD int dot4(unsigned a, unsigned b, int c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610
    return __dp4a(int(a), int(b), c);
#else
    for (int i = 0; i < 4; ++i) c += int(int8_t(uint8_t(a >> (8 * i)))) * int(int8_t(uint8_t(b >> (8 * i))));
    return c;
#endif
}

// A group's 16 bytes of nibbles as 4 words, split into the low nibbles (elements 0..15, one per byte: 0..15 is a
// non-negative int8, so the signed dp4a takes them as they are) and the high nibbles (elements 16..31).
struct Nibbles {
    unsigned lo[4], hi[4];
};
QWEN3VL_Q4_HD Nibbles split(unsigned w0, unsigned w1, unsigned w2, unsigned w3) {
    // Written out (no loops over arrays): the kernel keeps every word in a register.
    return Nibbles{{w0 & 0x0f0f0f0fu, w1 & 0x0f0f0f0fu, w2 & 0x0f0f0f0fu, w3 & 0x0f0f0f0fu},
                   {(w0 >> 4) & 0x0f0f0f0fu, (w1 >> 4) & 0x0f0f0f0fu, (w2 >> 4) & 0x0f0f0f0fu, (w3 >> 4) & 0x0f0f0f0fu}};
}

// I = sum_j q_j qx_j over the group: x_lo the int8 of x's elements 0..15 (4 words, element 4i + b in byte b of word
// i), x_hi those of 16..31. Exact.
QWEN3VL_Q4_HD int group_dot(const Nibbles& n, const unsigned (&x_lo)[4], const unsigned (&x_hi)[4]) {
    int s = dot4(n.lo[0], x_lo[0], 0);
    s = dot4(n.lo[1], x_lo[1], s);
    s = dot4(n.lo[2], x_lo[2], s);
    s = dot4(n.lo[3], x_lo[3], s);
    s = dot4(n.hi[0], x_hi[0], s);
    s = dot4(n.hi[1], x_hi[1], s);
    s = dot4(n.hi[2], x_hi[2], s);
    return dot4(n.hi[3], x_hi[3], s);
}

// acc + dx (a I - m X), as the kernel accumulates it: dsx = dx * X is computed once per block of x (f32, rounded).
QWEN3VL_Q4_HD float group_accumulate(float acc, int I, float a, float m, float dx, float dsx) {
    acc = fmaf(float(I), a * dx, acc);
    return fmaf(-m, dsx, acc);
}

}  // namespace q4arith
}  // namespace qwen3vl
