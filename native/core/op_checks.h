// Checks of what an op's tensors hold (not their shapes: the C API checks those), for backends whose memory the
// host can read when the op is called (the CPU). They throw INVALID_ARGUMENT without the op's name; the C API
// prefixes it (OpArgs::run). CUDA makes the same checks in its kernels (kernels/cuda_backend.h, DeviceError).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "error.h"

namespace qwen3vl {

// rows[i] in 0 .. x_rows - 1 and no row twice (scatter_rows).
inline void check_scatter_rows(const int32_t* rows, int64_t count, int64_t x_rows) {
    std::vector<bool> seen(static_cast<size_t>(x_rows), false);
    for (int64_t i = 0; i < count; ++i) {
        const int32_t r = rows[i];
        if (r < 0 || r >= x_rows)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "rows[" + std::to_string(i) + "] = " + std::to_string(r) +
                                                      " is outside x's " + std::to_string(x_rows) + " rows");
        if (seen[static_cast<size_t>(r)])
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
                 "rows[" + std::to_string(i) + "] = " + std::to_string(r) + " repeats an earlier row");
        seen[static_cast<size_t>(r)] = true;
    }
}

// ids[t] in 0 .. table_rows - 1 (embedding).
inline void check_ids(const int32_t* ids, int64_t tokens, int64_t table_rows) {
    for (int64_t t = 0; t < tokens; ++t)
        if (ids[t] < 0 || ids[t] >= table_rows)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "ids[" + std::to_string(t) + "] = " + std::to_string(ids[t]) +
                                                      " is outside the table's " + std::to_string(table_rows) +
                                                      " rows");
}

// n_segments + 1 offsets running from 0 to tokens without decreasing (SEGMENTS attention).
inline void check_segments(const int32_t* s, int64_t n_segments, int64_t tokens) {
    if (s[0] != 0 || s[n_segments] != tokens)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "segments must run from 0 to T = " + std::to_string(tokens) + ", got " +
                                                  std::to_string(s[0]) + " .. " + std::to_string(s[n_segments]));
    for (int64_t i = 0; i < n_segments; ++i)
        if (s[i + 1] < s[i])
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "segments decrease at index " + std::to_string(i + 1));
}

// The n_past an op runs with: `bound` itself, or the value at `value` (n_past_tensor), which must be in 0 .. bound.
inline int64_t read_n_past(int64_t bound, const int32_t* value) {
    if (value == nullptr) return bound;
    const int64_t v = *value;
    if (v < 0 || v > bound)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
             "n_past_tensor holds " + std::to_string(v) + ", outside 0 .. " + std::to_string(bound));
    return v;
}

}  // namespace qwen3vl
