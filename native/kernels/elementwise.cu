// Grid-stride elementwise kernels: memory-bound, one element per thread per step.
#include "common.cuh"
#include "elementwise.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

constexpr unsigned kBlock = 256;

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void swiglu_kernel(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = silu(gate[i]) * up[i];
}

// Stored through store_f32: the f32 result, or its 16-bit rounding (the input of a tensor-core GEMM, linear.cu).
template <bool kTanh>
__global__ void gelu_kernel(void* out, qwen3vl_dtype ot, const float* x, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float v = x[i];
        if (kTanh) {
            const float inner = 0.7978845608028654f * (v + 0.044715f * (v * v * v));
            store_f32(out, ot, size_t(i), 0.5f * v * (1.0f + tanhf(inner)));
        } else {
            store_f32(out, ot, size_t(i), v * 0.5f * (1.0f + erff(v * 0.7071067811865476f)));
        }
    }
}

}  // namespace

void add(CudaBackend& be, float* out, const float* a, const float* b, int64_t n) {
    if (n <= 0) return;
    be.activate();
    add_kernel<<<grid_for(size_t(n), kBlock), kBlock, 0, be.stream()>>>(out, a, b, n);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void swiglu(CudaBackend& be, float* out, const float* gate, const float* up, int64_t n) {
    if (n <= 0) return;
    be.activate();
    swiglu_kernel<<<grid_for(size_t(n), kBlock), kBlock, 0, be.stream()>>>(out, gate, up, n);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void gelu(CudaBackend& be, void* out, qwen3vl_dtype ot, const float* x, int64_t n, bool tanh_approximation) {
    if (n <= 0) return;
    be.activate();
    if (tanh_approximation) gelu_kernel<true><<<grid_for(size_t(n), kBlock), kBlock, 0, be.stream()>>>(out, ot, x, n);
    else gelu_kernel<false><<<grid_for(size_t(n), kBlock), kBlock, 0, be.stream()>>>(out, ot, x, n);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void gelu(CudaBackend& be, float* out, const float* x, int64_t n, bool tanh_approximation) {
    gelu(be, out, QWEN3VL_DTYPE_F32, x, n, tanh_approximation);
}

}  // namespace cuda
}  // namespace qwen3vl
