// Row gathers and scatters: the token embedding lookup, the scatter of vision features into the text sequence,
// and the vision position embedding (transformers' fast_pos_embed_interpolate for one frame).
#pragma once

#include <cstdint>

#include "qwen3vl.h"
#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

// out[t, :] = table[ids[t], :] as f32. ids must be in range (checked by the caller). A Q8 table has its f16 scale
// plane in scales (width / 32 per row); other dtypes pass NULL.
void embedding(ThreadPool& pool, float* out, const void* table, qwen3vl_dtype tt, const void* scales, const int32_t* ids,
               int64_t tokens, int64_t width);
// x[rows[r], :] = src[r, :] or += (accumulate). rows must be in range and distinct when accumulating.
void scatter_rows(ThreadPool& pool, float* x, const int32_t* rows, const float* src, int64_t count, int64_t width,
                  bool accumulate);

// torch.linspace(0, end, n, dtype=float32)[i] as PyTorch's CPU kernel computes it: step = end / (n - 1) in f32,
// the first half counted up from 0 and the second half down from end.
float linspace_f32(float end, int64_t n, int64_t i);

// The side x side table (rows side*side, width C) bilinearly sampled at linspace(0, side-1, grid_h) x
// linspace(0, side-1, grid_w) with fast_pos_embed_interpolate's taps (floor, min(floor+1, side-1)) and f32 weights,
// summed in its order, written in merge-window order: out row ((bh*(grid_w/m) + bw)*m + ih)*m + iw is grid
// position (bh*m + ih, bw*m + iw).
void position_embedding(ThreadPool& pool, float* out, const void* table, qwen3vl_dtype tt, int64_t side, int64_t width,
                        int64_t grid_h, int64_t grid_w, int64_t merge);

}  // namespace cpu
}  // namespace qwen3vl
