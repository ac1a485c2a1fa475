// Device helpers of the text M-RoPE prologue, shared by rope.cu (qk_norm_rope_kv) and attention_decode.cu (the same
// prologue fused into the decoding attention kernel). Products and sums use explicitly rounded f32 operations so
// nvcc does not contract them into FMAs: the results then round as the CPU reference's separate multiplies and adds
// do, and the fused and unfused kernels agree bit for bit.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "cuda_backend.h"
#include "op_params.h"

namespace qwen3vl {
namespace cuda {
namespace rope {

// 1 / theta^(2i / dim) rounded as native/cpu/rope.cpp's rope_inv_freq (the double power rounded once to f32).
__device__ __forceinline__ float inv_freq(int64_t i, int64_t dim, float theta) {
    const float e = __fdiv_rn(static_cast<float>(2 * i), static_cast<float>(dim));
    return __fdiv_rn(1.0f, static_cast<float>(pow(static_cast<double>(theta), static_cast<double>(e))));
}

__device__ __forceinline__ void cos_sin(float angle, float* c, float* s) {
    double sd, cd;
    sincos(static_cast<double>(angle), &sd, &cd);
    *c = static_cast<float>(cd);
    *s = static_cast<float>(sd);
}

// cos / sin of slot i < D/2 of token t for interleaved M-RoPE (t stream, except slots 1, 4, 7, ... below
// 3 * section[1]: h stream, and 2, 5, 8, ... below 3 * section[2]: w stream); freq = inv_freq(i, D, theta), which
// a caller may have computed beforehand (on the host: cpu::rope_inv_freq, the same rounding).
__device__ __forceinline__ void mrope_cos_sin(const QkNormRopeKv& a, int64_t t, int64_t i, float freq, float* c,
                                              float* s) {
    const int64_t T = a.tokens;
    float p = static_cast<float>(a.positions[t]);
    if (i % 3 == 1 && i < 3 * a.section[1]) p = static_cast<float>(a.positions[T + t]);
    else if (i % 3 == 2 && i < 3 * a.section[2]) p = static_cast<float>(a.positions[2 * T + t]);
    cos_sin(__fmul_rn(p, freq), c, s);
}
__device__ __forceinline__ void mrope_cos_sin(const QkNormRopeKv& a, int64_t t, int64_t i, float* c, float* s) {
    mrope_cos_sin(a, t, i, inv_freq(i, a.head_dim, a.theta), c, s);
}

// Rotate-half of a row whose elements are first scaled: x[i] * scale * w[i] (w NULL: no weight, scale 1). One warp.
__device__ __forceinline__ void rotate_row(float* row, int64_t half, const float* c, const float* s, float scale,
                                           const void* w, qwen3vl_dtype wt, unsigned lane) {
    for (int64_t i = lane; i < half; i += kWarp) {
        float x1 = row[i], x2 = row[i + half];
        if (w) {
            x1 = __fmul_rn(__fmul_rn(x1, scale), load_f32(w, wt, size_t(i)));
            x2 = __fmul_rn(__fmul_rn(x2, scale), load_f32(w, wt, size_t(i + half)));
        }
        row[i] = __fsub_rn(__fmul_rn(x1, c[i]), __fmul_rn(x2, s[i]));
        row[i + half] = __fadd_rn(__fmul_rn(x2, c[i]), __fmul_rn(x1, s[i]));
    }
}

// 1 / sqrt(mean(row^2) + eps), one warp.
__device__ __forceinline__ float row_inv_rms(const float* row, int64_t D, float eps, unsigned lane) {
    float ss = 0.0f;
    for (int64_t d = lane; d < D; d += kWarp) ss += row[d] * row[d];
    ss = warp_sum(ss);
    return 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
}

// The cache slot base of this run (graph replay: n_past read on the device) and whether the cache may be written:
// a device value outside 0 .. a.n_past writes no row and raises the error flag (from the first block only).
__device__ __forceinline__ bool cache_slot(const QkNormRopeKv& a, int64_t* n_past, bool first_block) {
    *n_past = a.n_past;
    if (a.n_past_device == nullptr) return true;
    const int64_t n = *a.n_past_device;
    const bool ok = n >= 0 && n <= a.n_past;
    *n_past = n;
    if (!ok && first_block && threadIdx.x == 0 && a.error_flag)
        *reinterpret_cast<volatile int32_t*>(a.error_flag) = CudaBackend::kNPastOutOfRange;
    return ok;
}

// A Q8 KV cache block (core/quant.h quantize_kv_q8, the same bits: IEEE division, f16 and integer rounding to
// nearest even): lane l holds x, element l of the block; every lane gets its int8 value and the block's f16 scale
// (NaN, with zeros, when the block holds a non-finite value or its scale overflows). All 32 lanes must call it.
struct Q8Lane {
    int8_t q;
    unsigned short d;
};
__device__ __forceinline__ Q8Lane kv_q8_lane(float x) {
    const bool finite = __all_sync(0xffffffffu, isfinite(x));
    float amax = fabsf(x);
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const __half dh = __float2half_rn(__fdiv_rn(amax, 127.0f));
    const float d = __half2float(dh);
    if (!finite || !isfinite(d)) return Q8Lane{0, static_cast<unsigned short>(0x7e00)};
    const float r = d == 0.0f ? 0.0f : rintf(__fdiv_rn(x, d));
    return Q8Lane{static_cast<int8_t>(fmaxf(-127.0f, fminf(127.0f, r))), __half_as_ushort(dh)};
}

// Element e of a new head row into a Q8 cache at flat offset base + e (called by every lane of a warp for e = lane,
// lane + 32, ...: one block per step).
__device__ __forceinline__ void store_kv_q8(void* cache, uint16_t* scales, size_t base, int64_t e, float x,
                                            unsigned lane) {
    const Q8Lane v = kv_q8_lane(x);
    static_cast<int8_t*>(cache)[base + size_t(e)] = v.q;
    if (lane == 0) scales[(base + size_t(e)) / 32] = v.d;
}

}  // namespace rope
}  // namespace cuda
}  // namespace qwen3vl
