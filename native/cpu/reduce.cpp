#include "reduce.h"

#include <cmath>

#include "nn_common.h"

namespace qwen3vl {
namespace cpu {

void softmax(ThreadPool& pool, float* out, const float* x, int64_t rows, int64_t n) {
    parallel_rows(pool, rows, 4 * n, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            const float* xr = x + r * n;
            float* yr = out + r * n;
            float m = -INFINITY;
            for (int64_t i = 0; i < n; ++i) m = std::fmax(m, xr[i]);
            double s = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                yr[i] = std::exp(xr[i] - m);
                s += yr[i];
            }
            const float sum = static_cast<float>(s);
            for (int64_t i = 0; i < n; ++i) yr[i] /= sum;
        }
    });
}

void argmax(ThreadPool& pool, int32_t* out, const float* x, int64_t rows, int64_t n) {
    parallel_rows(pool, rows, n, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            const float* xr = x + r * n;
            int64_t best = 0;
            for (int64_t i = 1; i < n && !std::isnan(xr[best]); ++i)
                if (xr[i] > xr[best] || std::isnan(xr[i])) best = i;
            out[r] = static_cast<int32_t>(best);
        }
    });
}

}  // namespace cpu
}  // namespace qwen3vl
