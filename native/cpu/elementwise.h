// Elementwise activations and the residual add on f32 arrays, split over the CPU backend's threads. Formulas are
// PyTorch's fp32 ones (F.silu, F.gelu with approximate "none" / "tanh"), in f32 with the C++ float functions.
#pragma once

#include <cstdint>

#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

// out = a + b; out may alias a or b.
void add(ThreadPool& pool, float* out, const float* a, const float* b, int64_t n);
// out = silu(gate) * up = gate / (1 + exp(-gate)) * up; out may alias gate or up.
void swiglu(ThreadPool& pool, float* out, const float* gate, const float* up, int64_t n);
// out = gelu(x): tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), or exact 0.5 x (1 + erf(x / sqrt 2)).
void gelu(ThreadPool& pool, float* out, const float* x, int64_t n, bool tanh_approximation);

float silu_f32(float x);
float gelu_tanh_f32(float x);
float gelu_erf_f32(float x);

}  // namespace cpu
}  // namespace qwen3vl
