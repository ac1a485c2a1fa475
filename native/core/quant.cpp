// See quant.h.
#include "quant.h"

#include <cmath>
#include <string>

#include "dtype.h"
#include "error.h"

namespace qwen3vl {

namespace {

// Element i (block b) of the weights, as messages name it: flat, or [row, column] within a row.
std::string where(int64_t row, int64_t i) {
    return row < 0 ? std::to_string(i) : "[" + std::to_string(row) + ", " + std::to_string(i) + "]";
}

void quantize_blocks(const float* w, int64_t n, int64_t row, int8_t* q, uint16_t* d) {
    require(n >= 0 && n % kQ8Block == 0,
            "q8: " + std::to_string(n) + " weights are not whole blocks of " + std::to_string(kQ8Block));
    for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const float* wb = w + b * kQ8Block;
        float amax = 0.0f;
        for (int64_t i = 0; i < kQ8Block; ++i) {
            if (!std::isfinite(wb[i]))
                fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q8: weight " + where(row, b * kQ8Block + i) + " is not finite");
            amax = std::fmax(amax, std::fabs(wb[i]));
        }
        const uint16_t dh = f32_to_f16(amax / 127.0f);
        const float scale = f16_to_f32(dh);
        if (!std::isfinite(scale))
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, q8_overflow_message(where(row, b)));
        d[b] = dh;
        int8_t* qb = q + b * kQ8Block;
        if (scale == 0.0f) {  // all zeros, or so small that the scale rounds to 0: stored as zeros
            for (int64_t i = 0; i < kQ8Block; ++i) qb[i] = 0;
            continue;
        }
        for (int64_t i = 0; i < kQ8Block; ++i) {
            const float r = std::nearbyint(wb[i] / scale);
            qb[i] = static_cast<int8_t>(std::fmax(-127.0f, std::fmin(127.0f, r)));
        }
    }
}

}  // namespace

std::string q8_overflow_message(const std::string& block) {
    return "q8: block " + block + " overflows the f16 scale (max |w| / 127 above 65504)";
}

void quantize_q8(const float* w, int64_t n, int8_t* q, uint16_t* d) { quantize_blocks(w, n, -1, q, d); }

void quantize_q8_row(const float* w, int64_t cols, int64_t row, int8_t* q, uint16_t* d) {
    quantize_blocks(w, cols, row, q, d);
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
