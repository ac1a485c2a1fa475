// Helpers shared by the CPU norm / activation / rotary / attention / embedding ops: reading weights of any float
// dtype as f32 one element at a time, and splitting rows over the thread pool in chunks big enough to pay for it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "dtype.h"
#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

inline float load_f32(const void* p, qwen3vl_dtype t, size_t i) {
    switch (t) {
        case QWEN3VL_DTYPE_F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case QWEN3VL_DTYPE_BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        default: return static_cast<const float*>(p)[i];
    }
}

inline void store_f32(void* p, qwen3vl_dtype t, size_t i, float v) {
    switch (t) {
        case QWEN3VL_DTYPE_F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); break;
        case QWEN3VL_DTYPE_BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); break;
        default: static_cast<float*>(p)[i] = v; break;
    }
}

// Runs fn(begin, end, thread) over [0, rows) in contiguous chunks. cost_per_row is a rough count of elements
// touched per row; chunks hold at least ~16K of them (below that, waking the workers costs more than the work)
// and there are at most 4 chunks per thread so the dynamic scheduling can balance uneven rows.
template <class Fn>
void parallel_rows(ThreadPool& pool, int64_t rows, int64_t cost_per_row, const Fn& fn) {
    if (rows <= 0) return;
    const int64_t min_rows = std::max<int64_t>(1, (int64_t{16384} + cost_per_row - 1) / std::max<int64_t>(1, cost_per_row));
    const int64_t max_chunks = static_cast<int64_t>(pool.size()) * 4;
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(max_chunks, rows / min_rows));
    const int64_t per = (rows + chunks - 1) / chunks;
    const int64_t n = (rows + per - 1) / per;
    pool.parallel_for(static_cast<size_t>(n), [&](size_t task, int thread) {
        const int64_t b = static_cast<int64_t>(task) * per;
        fn(b, std::min(rows, b + per), thread);
    });
}

}  // namespace cpu
}  // namespace qwen3vl
