// Elementwise activations and the residual add on f32 device arrays (host entry points; kernels in elementwise.cu).
// Formulas as native/cpu/elementwise.h, with the CUDA f32 math functions (expf, tanhf, erff: within 2 ulp).
#pragma once

#include <cstdint>

#include "cuda_backend.h"

namespace qwen3vl {
namespace cuda {

// out = a + b; out may alias a or b.
void add(CudaBackend& be, float* out, const float* a, const float* b, int64_t n);
// out = silu(gate) * up; out may alias gate or up.
void swiglu(CudaBackend& be, float* out, const float* gate, const float* up, int64_t n);
// out = gelu(x), tanh or exact erf form; out may alias x.
void gelu(CudaBackend& be, float* out, const float* x, int64_t n, bool tanh_approximation);

}  // namespace cuda
}  // namespace qwen3vl
