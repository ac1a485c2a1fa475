// Row reductions over the last dimension: softmax, argmax (greedy sampling over the logits) and top_k (the candidates
// of a sampled token).
#pragma once

#include <cstdint>

#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

// out = exp(x - max) / sum(exp(x - max)) per row of n; out may be x.
void softmax(ThreadPool& pool, float* out, const float* x, int64_t rows, int64_t n);
// out[r] = first index of the largest element of row r (as torch.argmax: a NaN counts as the largest).
void argmax(ThreadPool& pool, int32_t* out, const float* x, int64_t rows, int64_t n);
// values[r, j], indices[r, j] for j < k = the k largest elements of row r and their indices, in descending order:
// ties by the lower index, a NaN above everything (NaNs among themselves by index), -0 equal to +0; the values are
// the elements' own bits. 1 <= k <= n.
void top_k(ThreadPool& pool, float* values, int32_t* indices, const float* x, int64_t rows, int64_t n, int64_t k);

}  // namespace cpu
}  // namespace qwen3vl
