// See quant.h.
#include "quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "dtype.h"
#include "error.h"
#include "quant_q4_impl.h"

namespace qwen3vl {

namespace {

// Element i (block b) of the weights, as messages name it: flat, or [row, column] within a row.
std::string where(int64_t row, int64_t i) {
    return row < 0 ? std::to_string(i) : "[" + std::to_string(row) + ", " + std::to_string(i) + "]";
}

// One block of kQ8Block values: d = f16(max|x| / 127), q = round(x / d) clamped to +-127, zeros when d rounds to 0.
// Returns false, writing nothing, when the block holds a non-finite value (*bad: its index) or its scale overflows
// f16 (*bad: -1): the weights' quantizer refuses those, the KV cache's stores a NaN scale.
bool quantize_block(const float* x, int8_t* q, uint16_t* d, int64_t* bad) {
    float amax = 0.0f;
    for (int64_t i = 0; i < kQ8Block; ++i) {
        if (!std::isfinite(x[i])) {
            *bad = i;
            return false;
        }
        amax = std::fmax(amax, std::fabs(x[i]));
    }
    const uint16_t dh = f32_to_f16(amax / 127.0f);
    const float scale = f16_to_f32(dh);
    if (!std::isfinite(scale)) {
        *bad = -1;
        return false;
    }
    *d = dh;
    for (int64_t i = 0; i < kQ8Block; ++i) {
        const float r = scale == 0.0f ? 0.0f : std::nearbyint(x[i] / scale);  // scale 0: all (near) zeros
        q[i] = static_cast<int8_t>(std::fmax(-127.0f, std::fmin(127.0f, r)));
    }
    return true;
}

void quantize_blocks(const float* w, int64_t n, int64_t row, int8_t* q, uint16_t* d) {
    require(n >= 0 && n % kQ8Block == 0,
            "q8: " + std::to_string(n) + " weights are not whole blocks of " + std::to_string(kQ8Block));
    for (int64_t b = 0; b < n / kQ8Block; ++b) {
        int64_t bad = 0;
        if (quantize_block(w + b * kQ8Block, q + b * kQ8Block, d + b, &bad)) continue;
        if (bad >= 0)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q8: weight " + where(row, b * kQ8Block + bad) + " is not finite");
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, q8_overflow_message(where(row, b)));
    }
}

// The host side of the Q4 arithmetic: plain IEEE f32 operations (this file is compiled without FMA contraction).
struct HostArith {
    static float add(float a, float b) { return a + b; }
    static float sub(float a, float b) { return a - b; }
    static float mul(float a, float b) { return a * b; }
    static float div(float a, float b) { return a / b; }
    static float neg(float a) { return -a; }
    static uint16_t to_f16(float v) { return f32_to_f16(v); }
    static float from_f16(uint16_t h) { return f16_to_f32(h); }
};

void quantize_q4_blocks(const float* w, int64_t n, int64_t row, uint8_t* nib, uint8_t* headers) {
    require(n >= 0 && n % kQ4Super == 0,
            "q4: " + std::to_string(n) + " weights are not whole super-blocks of " + std::to_string(kQ4Super));
    for (int64_t b = 0; b < n / kQ4Super; ++b) {
        const float* wb = w + b * kQ4Super;
        for (int64_t i = 0; i < kQ4Super; ++i)
            if (!std::isfinite(wb[i]))
                fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q4: weight " + where(row, b * kQ4Super + i) + " is not finite");
        if (q4impl::quantize_super<HostArith>(wb, nib + b * (kQ4Super / 2), headers + b * kQ4HeaderBytes))
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, q4_overflow_message(where(row, b)));
    }
}

}  // namespace

std::string q4_overflow_message(const std::string& superblock) {
    return "q4: super-block " + superblock + " overflows the f16 scale (a group's scale or min / 63 above 65504)";
}

void quantize_q4(const float* w, int64_t n, uint8_t* nib, uint8_t* headers) {
    quantize_q4_blocks(w, n, -1, nib, headers);
}

void quantize_q4_row(const float* w, int64_t cols, int64_t row, uint8_t* nib, uint8_t* headers) {
    quantize_q4_blocks(w, cols, row, nib, headers);
}

void dequantize_q4(const uint8_t* nib, const uint8_t* headers, int64_t n, float* out) {
    require(n >= 0 && n % kQ4Super == 0,
            "q4: " + std::to_string(n) + " weights are not whole super-blocks of " + std::to_string(kQ4Super));
    for (int64_t b = 0; b < n / kQ4Super; ++b) {
        const uint8_t* h = headers + b * kQ4HeaderBytes;
        const float d = f16_to_f32(uint16_t(h[0] | (h[1] << 8))), dmin = f16_to_f32(uint16_t(h[2] | (h[3] << 8)));
        for (int g = 0; g < 8; ++g) {
            int sc, mn;
            q4_group_scale_min(h, g, &sc, &mn);
            const float a = d * float(sc), m = dmin * float(mn);
            const uint8_t* ng = nib + b * (kQ4Super / 2) + g * 16;
            float* o = out + b * kQ4Super + g * kQ4Group;
            for (int j = 0; j < 16; ++j) {
                o[j] = a * float(ng[j] & 15) - m;
                o[j + 16] = a * float(ng[j] >> 4) - m;
            }
        }
    }
}

std::string q8_overflow_message(const std::string& block) {
    return "q8: block " + block + " overflows the f16 scale (max |w| / 127 above 65504)";
}

void quantize_q8(const float* w, int64_t n, int8_t* q, uint16_t* d) { quantize_blocks(w, n, -1, q, d); }

void quantize_kv_q8(const float* x, int64_t n, int8_t* q, uint16_t* d) {
    for (int64_t b = 0; b < n / kQ8Block; ++b) {
        int64_t bad = 0;
        if (quantize_block(x + b * kQ8Block, q + b * kQ8Block, d + b, &bad)) continue;
        d[b] = kQ8NanScale;
        std::fill(q + b * kQ8Block, q + (b + 1) * kQ8Block, int8_t{0});
    }
}

void quantize_q8_row(const float* w, int64_t cols, int64_t row, int8_t* q, uint16_t* d) {
    quantize_blocks(w, cols, row, q, d);
}

float e4m3_to_f32(uint8_t v) {
    const float sign = (v & 0x80) ? -1.0f : 1.0f;
    const int e = (v >> 3) & 0xf, m = v & 7;
    if (e == 15 && m == 7) return std::nanf("");
    if (e == 0) return sign * std::ldexp(float(m), -9);  // subnormal: m / 8 * 2^-6
    return sign * std::ldexp(float(8 + m), e - 10);      // (1 + m / 8) * 2^(e - 7)
}

void dequantize_fp8_rows(const uint8_t* w, int64_t K, int64_t r0, int64_t rows, const uint8_t* scales, bool scales_bf16,
                         int64_t scale_cols, int64_t block_rows, int64_t block_cols, float* out) {
    float lut[256];
    for (int i = 0; i < 256; ++i) lut[i] = e4m3_to_f32(uint8_t(i));
    for (int64_t r = r0; r < r0 + rows; ++r) {
        const uint8_t* srow = scales + size_t(r / block_rows) * size_t(scale_cols) * (scales_bf16 ? 2 : 4);
        const uint8_t* wrow = w + size_t(r) * size_t(K);
        float* orow = out + size_t(r - r0) * size_t(K);
        for (int64_t k0 = 0; k0 < K; k0 += block_cols) {
            float scale;
            if (scales_bf16) {
                uint16_t h;
                std::memcpy(&h, srow + size_t(k0 / block_cols) * 2, 2);
                scale = bf16_to_f32(h);
            } else {
                std::memcpy(&scale, srow + size_t(k0 / block_cols) * 4, 4);
            }
            const int64_t k1 = std::min(K, k0 + block_cols);
            for (int64_t k = k0; k < k1; ++k) {
                const uint8_t b = wrow[k];
                if ((b & 0x7f) == 0x7f)
                    fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
                         "fp8: weight [" + std::to_string(r) + ", " + std::to_string(k) + "] is NaN");
                orow[k] = lut[b] * scale;
            }
        }
    }
}

void dequantize_q8(const int8_t* q, const uint16_t* d, int64_t n, float* out) {
    require(n >= 0 && n % kQ8Block == 0,
            "q8: " + std::to_string(n) + " weights are not whole blocks of " + std::to_string(kQ8Block));
    for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const float scale = f16_to_f32(d[b]);
        for (int64_t i = 0; i < kQ8Block; ++i) out[b * kQ8Block + i] = scale * float(q[b * kQ8Block + i]);
    }
}

}  // namespace qwen3vl
