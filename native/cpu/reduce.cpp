#include "reduce.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "nn_common.h"

namespace qwen3vl {
namespace cpu {
namespace {

// top_k's order as one integer per element, larger first: the value's order in the high 32 bits (NaN above +inf,
// -0 as +0), the inverted index in the low 32 (the lower index first on ties). The keys of a row are distinct.
// kernels/topk.cu uses the same keys.
uint64_t top_k_key(float v, int64_t index) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    const uint32_t magnitude = u & 0x7FFFFFFFu;
    if (magnitude > 0x7F800000u) u = 0xFFFFFFFFu;  // NaN
    else if (magnitude == 0) u = 0x80000000u;        // +0 and -0
    else u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t{u} << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(index));
}

}  // namespace

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

// A min-heap of the k best keys so far: one comparison per element once it is full.
void top_k(ThreadPool& pool, float* values, int32_t* indices, const float* x, int64_t rows, int64_t n, int64_t k) {
    parallel_rows(pool, rows, n, [&](int64_t b, int64_t e, int) {
        std::vector<uint64_t> heap;
        heap.reserve(static_cast<size_t>(k));
        const std::greater<uint64_t> above;
        for (int64_t r = b; r < e; ++r) {
            const float* xr = x + r * n;
            heap.clear();
            for (int64_t i = 0; i < n; ++i) {
                const uint64_t key = top_k_key(xr[i], i);
                if (static_cast<int64_t>(heap.size()) < k) {
                    heap.push_back(key);
                    std::push_heap(heap.begin(), heap.end(), above);
                } else if (key > heap.front()) {
                    std::pop_heap(heap.begin(), heap.end(), above);
                    heap.back() = key;
                    std::push_heap(heap.begin(), heap.end(), above);
                }
            }
            std::sort_heap(heap.begin(), heap.end(), above);  // descending
            for (int64_t j = 0; j < k; ++j) {
                const int64_t i = 0xFFFFFFFFu - static_cast<uint32_t>(heap[static_cast<size_t>(j)]);
                values[r * k + j] = xr[i];
                indices[r * k + j] = static_cast<int32_t>(i);
            }
        }
    });
}

}  // namespace cpu
}  // namespace qwen3vl
