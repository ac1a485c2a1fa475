// Elementwise activations and the residual add on f32 device arrays (host entry points; kernels in elementwise.cu).
// Formulas as native/cpu/elementwise.h, with the CUDA f32 math functions (expf, tanhf, erff: within 2 ulp).
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

// out = a + b; out may alias a or b.
void add(CudaBackend& be, float* out, const float* a, const float* b, int64_t n);
// out = silu(gate) * up; out may alias gate or up.
void swiglu(CudaBackend& be, float* out, const float* gate, const float* up, int64_t n);
// out = gelu(x), tanh or exact erf form; out may alias x.
void gelu(CudaBackend& be, float* out, const float* x, int64_t n, bool tanh_approximation);
// gelu stored as ot (f32, f16 or bf16: the round-to-nearest-even of the f32 result); out must not overlap x unless
// ot is f32.
void gelu(CudaBackend& be, void* out, qwen3vl_dtype ot, const float* x, int64_t n, bool tanh_approximation);

}  // namespace cuda
}  // namespace qwen3vl
