#include "elementwise.h"

#include <cmath>

#include "nn_common.h"

namespace qwen3vl {
namespace cpu {

float silu_f32(float x) { return x / (1.0f + std::exp(-x)); }

float gelu_tanh_f32(float x) {
    const float beta = 0.7978845608028654f;  // sqrt(2 / pi)
    const float kappa = 0.044715f;
    const float inner = beta * (x + kappa * (x * x * x));
    return 0.5f * x * (1.0f + std::tanh(inner));
}

float gelu_erf_f32(float x) { return x * 0.5f * (1.0f + std::erf(x * 0.7071067811865476f)); }

// Flat arrays are split into blocks of 4096 elements: the rows of parallel_rows.
template <class Fn>
static void parallel_elements(ThreadPool& pool, int64_t n, int64_t cost, const Fn& fn) {
    const int64_t block = 4096;
    parallel_rows(pool, (n + block - 1) / block, block * cost, [&](int64_t b, int64_t e, int) {
        const int64_t end = e * block < n ? e * block : n;
        for (int64_t i = b * block; i < end; ++i) fn(i);
    });
}

void add(ThreadPool& pool, float* out, const float* a, const float* b, int64_t n) {
    parallel_elements(pool, n, 1, [=](int64_t i) { out[i] = a[i] + b[i]; });
}

void swiglu(ThreadPool& pool, float* out, const float* gate, const float* up, int64_t n) {
    parallel_elements(pool, n, 8, [=](int64_t i) { out[i] = silu_f32(gate[i]) * up[i]; });
}

void gelu(ThreadPool& pool, float* out, const float* x, int64_t n, bool tanh_approximation) {
    if (tanh_approximation) parallel_elements(pool, n, 8, [=](int64_t i) { out[i] = gelu_tanh_f32(x[i]); });
    else parallel_elements(pool, n, 8, [=](int64_t i) { out[i] = gelu_erf_f32(x[i]); });
}

}  // namespace cpu
}  // namespace qwen3vl
