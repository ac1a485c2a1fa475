// The Q4 quantizer's arithmetic (core/quant.h describes the format), written once for the host reference
// (core/quant.cpp) and the CUDA kernel (kernels/quant.cu). Every float operation goes through the policy A, which maps
// them to plain IEEE operations on the host (that file is compiled without FMA contraction) and to the _rn intrinsics
// on the device, so both give the same bits. Rounding to integers is by the 1.5 * 2^23 addition (exact for the
// clamped arguments), so no library call is involved.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QWEN3VL_HD __host__ __device__
#else
#define QWEN3VL_HD
#endif

namespace qwen3vl {
namespace q4impl {

constexpr int kGroup = 32;       // weights per group: one 6-bit scale and one 6-bit min
constexpr int kGroups = 8;       // groups per super-block
constexpr int kSuper = 256;      // weights per super-block: f16 d and dmin, 12 bytes of packed 6-bit scales and mins
constexpr int kHeaderBytes = 16; // d, dmin, scales[12]
constexpr int kSearchSteps = 4;  // candidate grids tried per group: 14, 14.25, ... 15 levels over (max - min)

// Sums of 32 values are taken in 8 lanes (value i into lane i % 8, in order) and the lanes added as a fixed tree,
// so that a vectorised quantizer (8 float lanes) can reproduce the reference bit for bit.
template <class A>
QWEN3VL_HD inline float sum_lanes(const float* p) {
    return A::add(A::add(A::add(p[0], p[4]), A::add(p[2], p[6])), A::add(A::add(p[1], p[5]), A::add(p[3], p[7])));
}

// Round to nearest even, for |v| <= 2^22 (the callers clamp first): exact with IEEE f32 addition.
template <class A>
QWEN3VL_HD inline float round_small(float v) {
    return A::sub(A::add(v, 12582912.0f), 12582912.0f);
}

template <class A>
QWEN3VL_HD inline float clampf(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// The group's scale s >= 0 and min offset m >= 0 (w ~ s q - m, q in [0, 15]) that minimise the squared error over a
// few candidate grids: for each, q is rounded on the grid and (s, -m) is the least-squares line through (q, w), with
// the offset kept <= 0 so that m is a non-negative 6-bit multiple later (the format's zero is always representable).
template <class A>
QWEN3VL_HD inline void fit_group(const float* w, float* scale_out, float* min_out) {
    float lo = w[0], hi = w[0];
    for (int i = 1; i < kGroup; ++i) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    if (lo > 0.0f) lo = 0.0f;
    if (hi < 0.0f) hi = 0.0f;
    *scale_out = 0.0f;
    *min_out = A::neg(lo);
    if (!(hi > lo)) return;  // all zero
    const float range = A::sub(hi, lo);
    float best_err = -1.0f;
    for (int step = 0; step <= kSearchSteps; ++step) {
        const float levels = A::add(14.0f, A::mul(0.25f, float(step)));
        const float inv = A::div(levels, range);
        float sl[8] = {}, sl2[8] = {}, sxl[8] = {}, sx[8] = {};
        float l[kGroup];
        for (int i = 0; i < kGroup; ++i) {
            const float q = clampf<A>(round_small<A>(clampf<A>(A::mul(inv, A::sub(w[i], lo)), 0.0f, 16.0f)), 0.0f, 15.0f);
            l[i] = q;
            sl[i % 8] = A::add(sl[i % 8], q);
            sl2[i % 8] = A::add(sl2[i % 8], A::mul(q, q));
            sxl[i % 8] = A::add(sxl[i % 8], A::mul(w[i], q));
            sx[i % 8] = A::add(sx[i % 8], w[i]);
        }
        const float tl = sum_lanes<A>(sl), tl2 = sum_lanes<A>(sl2), txl = sum_lanes<A>(sxl), tx = sum_lanes<A>(sx);
        const float n = float(kGroup);
        const float det = A::sub(A::mul(n, tl2), A::mul(tl, tl));
        if (!(det > 0.0f)) continue;  // one level only: the plain grid below covers it
        float s = A::div(A::sub(A::mul(n, txl), A::mul(tx, tl)), det);
        float off = A::div(A::sub(A::mul(tl2, tx), A::mul(tl, txl)), det);
        if (off > 0.0f) {  // the line would need a positive offset: fit the scale alone through zero
            off = 0.0f;
            s = A::div(txl, tl2);
        }
        if (!(s > 0.0f)) continue;
        float e2[8] = {};
        for (int i = 0; i < kGroup; ++i) {
            const float e = A::sub(A::add(A::mul(s, l[i]), off), w[i]);
            e2[i % 8] = A::add(e2[i % 8], A::mul(e, e));
        }
        const float err = sum_lanes<A>(e2);
        if (best_err < 0.0f || err < best_err) {
            best_err = err;
            *scale_out = s;
            *min_out = A::neg(off);
        }
    }
    if (best_err < 0.0f) {  // no candidate fitted: the plain grid
        *scale_out = A::div(range, 15.0f);
        *min_out = A::neg(lo);
    }
}

// Returns 0, or 1 when a super-block scale overflows f16 (the caller names the super-block); non-finite weights are
// checked by the caller first. w: 256 weights; nib: 128 bytes; header: 16 bytes.
template <class A>
QWEN3VL_HD inline int quantize_super(const float* w, uint8_t* nib, uint8_t* header) {
    float s[kGroups], m[kGroups];
    float smax = 0.0f, mmax = 0.0f;
    for (int g = 0; g < kGroups; ++g) {
        fit_group<A>(w + g * kGroup, &s[g], &m[g]);
        smax = s[g] > smax ? s[g] : smax;
        mmax = m[g] > mmax ? m[g] : mmax;
    }
    const uint16_t dh = A::to_f16(A::div(smax, 63.0f));
    const uint16_t mh = A::to_f16(A::div(mmax, 63.0f));
    const float d = A::from_f16(dh), dmin = A::from_f16(mh);
    if (!(d <= 65504.0f) || !(dmin <= 65504.0f)) return 1;
    uint8_t sc[kGroups], mn[kGroups];
    for (int g = 0; g < kGroups; ++g) {
        sc[g] = d > 0.0f ? uint8_t(clampf<A>(round_small<A>(clampf<A>(A::div(s[g], d), 0.0f, 64.0f)), 0.0f, 63.0f)) : uint8_t(0);
        mn[g] = dmin > 0.0f ? uint8_t(clampf<A>(round_small<A>(clampf<A>(A::div(m[g], dmin), 0.0f, 64.0f)), 0.0f, 63.0f)) : uint8_t(0);
    }
    header[0] = uint8_t(dh & 0xff);
    header[1] = uint8_t(dh >> 8);
    header[2] = uint8_t(mh & 0xff);
    header[3] = uint8_t(mh >> 8);
    for (int j = 0; j < 12; ++j) header[4 + j] = 0;
    for (int g = 0; g < kGroups; ++g) {
        header[4 + g] = uint8_t(sc[g] | ((mn[g] & 3) << 6));
        header[12 + g / 2] = uint8_t(header[12 + g / 2] | ((mn[g] >> 2) << (4 * (g & 1))));
    }
    for (int g = 0; g < kGroups; ++g) {
        const float a = A::mul(d, float(sc[g]));
        const float b = A::mul(dmin, float(mn[g]));
        const float inv = a > 0.0f ? A::div(1.0f, a) : 0.0f;
        const float* wg = w + g * kGroup;
        uint8_t* ng = nib + g * 16;
        for (int j = 0; j < 16; ++j) {
            const float q0 = clampf<A>(round_small<A>(clampf<A>(A::mul(A::add(wg[j], b), inv), -1.0f, 16.0f)), 0.0f, 15.0f);
            const float q1 =
                clampf<A>(round_small<A>(clampf<A>(A::mul(A::add(wg[j + 16], b), inv), -1.0f, 16.0f)), 0.0f, 15.0f);
            ng[j] = uint8_t(uint8_t(q0) | (uint8_t(q1) << 4));
        }
    }
    return 0;
}

}  // namespace q4impl
}  // namespace qwen3vl
