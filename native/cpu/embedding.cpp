#include "embedding.h"

#include <cstring>

#include "convert.h"
#include "dtype.h"
#include "nn_common.h"
#include "quant.h"

namespace qwen3vl {
namespace cpu {

void embedding(ThreadPool& pool, float* out, const void* table, qwen3vl_dtype tt, const void* scales, const int32_t* ids,
               int64_t tokens, int64_t width) {
    const size_t row_bytes = static_cast<size_t>(width) * dtype_size(tt);
    if (tt == QWEN3VL_DTYPE_Q8) {  // each row is its int8 values and their scales
        const auto* q = static_cast<const int8_t*>(table);
        const auto* d = static_cast<const uint16_t*>(scales);
        parallel_rows(pool, tokens, width, [&](int64_t b, int64_t e, int) {
            for (int64_t t = b; t < e; ++t)
                dequantize_q8(q + int64_t(ids[t]) * width, d + int64_t(ids[t]) * (width / kQ8Block), width,
                              out + t * width);
        });
        return;
    }
    if (tt == QWEN3VL_DTYPE_Q4) {  // each row is its nibbles and its super-block headers
        const auto* q = static_cast<const uint8_t*>(table);
        const auto* h = static_cast<const uint8_t*>(scales);
        parallel_rows(pool, tokens, width, [&](int64_t b, int64_t e, int) {
            for (int64_t t = b; t < e; ++t)
                dequantize_q4(q + int64_t(ids[t]) * (width / 2), h + int64_t(ids[t]) * (width / kQ4Super) * kQ4HeaderBytes,
                              width, out + t * width);
        });
        return;
    }
    parallel_rows(pool, tokens, width, [&](int64_t b, int64_t e, int) {
        for (int64_t t = b; t < e; ++t)
            convert(out + t * width, QWEN3VL_DTYPE_F32, static_cast<const char*>(table) + row_bytes * ids[t], tt,
                    static_cast<size_t>(width));
    });
}

void scatter_rows(ThreadPool& pool, float* x, const int32_t* rows, const float* src, int64_t count, int64_t width,
                  bool accumulate) {
    parallel_rows(pool, count, width, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            float* dst = x + static_cast<int64_t>(rows[r]) * width;
            const float* s = src + r * width;
            if (accumulate)
                for (int64_t i = 0; i < width; ++i) dst[i] += s[i];
            else
                std::memcpy(dst, s, static_cast<size_t>(width) * sizeof(float));
        }
    });
}

float linspace_f32(float end, int64_t n, int64_t i) {
    if (n == 1) return 0.0f;
    const float step = end / static_cast<float>(n - 1);
    return i < n / 2 ? step * static_cast<float>(i) : end - step * static_cast<float>(n - 1 - i);
}

namespace {
struct Taps {
    int64_t lo, hi;
    float d;  // weight of hi; lo gets 1 - d
};
Taps taps(int64_t side, int64_t n, int64_t i) {
    const float v = linspace_f32(static_cast<float>(side - 1), n, i);
    const int64_t lo = static_cast<int64_t>(v);  // .int(): truncation, v >= 0
    const int64_t hi = lo + 1 < side - 1 ? lo + 1 : side - 1;
    return {lo, hi, v - static_cast<float>(lo)};
}
}  // namespace

void position_embedding(ThreadPool& pool, float* out, const void* table, qwen3vl_dtype tt, int64_t side, int64_t width,
                        int64_t grid_h, int64_t grid_w, int64_t merge) {
    const int64_t blocks_w = grid_w / merge;
    parallel_rows(pool, grid_h * grid_w, 8 * width, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            const int64_t iw = r % merge, ih = (r / merge) % merge, block = r / (merge * merge);
            const int64_t y = (block / blocks_w) * merge + ih, x = (block % blocks_w) * merge + iw;
            const Taps ty = taps(side, grid_h, y), tx = taps(side, grid_w, x);
            const float w[4] = {(1.0f - ty.d) * (1.0f - tx.d), (1.0f - ty.d) * tx.d, ty.d * (1.0f - tx.d),
                                ty.d * tx.d};
            const size_t src[4] = {static_cast<size_t>((ty.lo * side + tx.lo) * width),
                                   static_cast<size_t>((ty.lo * side + tx.hi) * width),
                                   static_cast<size_t>((ty.hi * side + tx.lo) * width),
                                   static_cast<size_t>((ty.hi * side + tx.hi) * width)};
            float* o = out + r * width;
            for (int64_t c = 0; c < width; ++c) {
                const size_t u = static_cast<size_t>(c);
                float v = load_f32(table, tt, src[0] + u) * w[0];
                v += load_f32(table, tt, src[1] + u) * w[1];
                v += load_f32(table, tt, src[2] + u) * w[2];
                v += load_f32(table, tt, src[3] + u) * w[3];
                o[c] = v;
            }
        }
    });
}

}  // namespace cpu
}  // namespace qwen3vl
