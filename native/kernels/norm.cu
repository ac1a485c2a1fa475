// One block per row (grid-stride over rows), f32 block reductions. Each thread touches the same elements in every
// pass, so in-place calls (out == x) need no extra synchronisation. RMSNorm and LayerNorm store through store_f32, so
// the same kernel writes the f32 result or its 16-bit rounding (the input of a tensor-core GEMM, linear.cu).
#include "common.cuh"
#include "norm.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

__global__ void rms_norm_kernel(void* out, qwen3vl_dtype ot, const float* x, const void* w, qwen3vl_dtype wt,
                                int64_t rows, int64_t n, float eps) {
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * n;
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            store_f32(out, ot, size_t(r * n + i), (xr[i] * inv) * load_f32(w, wt, size_t(i)));
    }
}

__global__ void add_rms_norm_kernel(float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt,
                                    int64_t rows, int64_t n, float eps) {
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        float* res = residual + r * n;
        const float* xr = x + r * n;
        float* yr = out + r * n;
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = res[i] + xr[i];
            res[i] = v;
            ss += v * v;
        }
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (res[i] * inv) * load_f32(w, wt, size_t(i));
    }
}

__global__ void layer_norm_kernel(void* out, qwen3vl_dtype ot, const float* x, const void* w, qwen3vl_dtype wt,
                                  const void* b, qwen3vl_dtype bt, int64_t rows, int64_t n, float eps) {
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * n;
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
        const float mean = block_sum(s, red) / static_cast<float>(n);
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float d = xr[i] - mean;
            ss += d * d;
        }
        const float rstd = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(n) + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            store_f32(out, ot, size_t(r * n + i),
                      (xr[i] - mean) * rstd * load_f32(w, wt, size_t(i)) + load_f32(b, bt, size_t(i)));
    }
}

}  // namespace

void rms_norm(CudaBackend& be, void* out, qwen3vl_dtype ot, const float* x, const void* w, qwen3vl_dtype wt,
              int64_t rows, int64_t n, float eps) {
    if (rows <= 0) return;
    be.activate();
    rms_norm_kernel<<<grid_rows(rows), row_block(n), 0, be.stream()>>>(out, ot, x, w, wt, rows, n, eps);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void rms_norm(CudaBackend& be, float* out, const float* x, const void* w, qwen3vl_dtype wt, int64_t rows, int64_t n,
              float eps) {
    rms_norm(be, out, QWEN3VL_DTYPE_F32, x, w, wt, rows, n, eps);
}

void add_rms_norm(CudaBackend& be, float* residual, float* out, const float* x, const void* w, qwen3vl_dtype wt,
                  int64_t rows, int64_t n, float eps) {
    if (rows <= 0) return;
    be.activate();
    add_rms_norm_kernel<<<grid_rows(rows), row_block(n), 0, be.stream()>>>(residual, out, x, w, wt, rows, n, eps);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void layer_norm(CudaBackend& be, void* out, qwen3vl_dtype ot, const float* x, const void* w, qwen3vl_dtype wt,
                const void* b, qwen3vl_dtype bt, int64_t rows, int64_t n, float eps) {
    if (rows <= 0) return;
    be.activate();
    layer_norm_kernel<<<grid_rows(rows), row_block(n), 0, be.stream()>>>(out, ot, x, w, wt, b, bt, rows, n, eps);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void layer_norm(CudaBackend& be, float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b,
                qwen3vl_dtype bt, int64_t rows, int64_t n, float eps) {
    layer_norm(be, out, QWEN3VL_DTYPE_F32, x, w, wt, b, bt, rows, n, eps);
}

}  // namespace cuda
}  // namespace qwen3vl
