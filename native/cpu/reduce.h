// Row reductions over the last dimension: softmax and argmax (greedy sampling over the logits).
#pragma once

#include <cstdint>

#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

// out = exp(x - max) / sum(exp(x - max)) per row of n; out may be x.
void softmax(ThreadPool& pool, float* out, const float* x, int64_t rows, int64_t n);
// out[r] = first index of the largest element of row r (as torch.argmax: a NaN counts as the largest).
void argmax(ThreadPool& pool, int32_t* out, const float* x, int64_t rows, int64_t n);

}  // namespace cpu
}  // namespace qwen3vl
