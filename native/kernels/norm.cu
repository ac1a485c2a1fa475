// One block per row (grid-stride over rows), f32 block reductions. Each thread touches the same elements in every
// pass, so in-place calls (out == x) need no extra synchronisation. RMSNorm and LayerNorm store through store_f32, so
// the same kernel writes the f32 result or its 16-bit rounding (the input of a tensor-core GEMM, linear.cu).
#include <algorithm>
#include <cstdint>

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

// LayerNorm with the row in registers (n a multiple of 4, x 16-byte aligned): each thread loads V float4s once;
// the mean and then the centred sum of squares are taken over the registers (two passes, as the CPU reference), so x
// is read from memory once instead of three times. The vision tower's rows of 1024 are one float4 per thread.
constexpr unsigned kLnThreads = 256;
template <int V>
__global__ void __launch_bounds__(kLnThreads) layer_norm_vec_kernel(void* out, qwen3vl_dtype ot, const float* x,
                                                                    const void* w, qwen3vl_dtype wt, const void* b,
                                                                    qwen3vl_dtype bt, int64_t rows, int64_t n,
                                                                    float eps) {
    __shared__ float red[32];
    const int64_t n4 = n / 4;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float4* xr = reinterpret_cast<const float4*>(x + r * n);
        float4 v[V];
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < V; ++j) {
            const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
            v[j] = i < n4 ? xr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            s += (v[j].x + v[j].y) + (v[j].z + v[j].w);
        }
        const float mean = block_sum(s, red) / static_cast<float>(n);
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < V; ++j) {
            if (threadIdx.x + int64_t(j) * blockDim.x >= n4) continue;
            const float a = v[j].x - mean, c = v[j].y - mean, d = v[j].z - mean, e = v[j].w - mean;
            ss += (a * a + c * c) + (d * d + e * e);
        }
        const float rstd = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(n) + eps);
#pragma unroll
        for (int j = 0; j < V; ++j) {
            const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
            if (i >= n4) continue;
            const auto emit = [&](int q, float e) {
                const size_t k = size_t(4 * i + q);
                store_f32(out, ot, size_t(r * n) + k, (e - mean) * rstd * load_f32(w, wt, k) + load_f32(b, bt, k));
            };
            emit(0, v[j].x);
            emit(1, v[j].y);
            emit(2, v[j].z);
            emit(3, v[j].w);
        }
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
    const int64_t n4 = n / 4;
    if (n % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && n4 <= 8 * int64_t(kLnThreads)) {
        const unsigned threads = unsigned(std::min<int64_t>(kLnThreads, (n4 + kWarp - 1) / kWarp * kWarp));
        const int64_t per = (n4 + threads - 1) / threads;  // float4s per thread: 1 .. 8
        auto kernel = per <= 1 ? layer_norm_vec_kernel<1> : per <= 2 ? layer_norm_vec_kernel<2>
                    : per <= 4 ? layer_norm_vec_kernel<4> : layer_norm_vec_kernel<8>;
        kernel<<<grid_rows(rows), threads, 0, be.stream()>>>(out, ot, x, w, wt, b, bt, rows, n, eps);
    } else {
        layer_norm_kernel<<<grid_rows(rows), row_block(n), 0, be.stream()>>>(out, ot, x, w, wt, b, bt, rows, n, eps);
    }
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void layer_norm(CudaBackend& be, float* out, const float* x, const void* w, qwen3vl_dtype wt, const void* b,
                qwen3vl_dtype bt, int64_t rows, int64_t n, float eps) {
    layer_norm(be, out, QWEN3VL_DTYPE_F32, x, w, wt, b, bt, rows, n, eps);
}

}  // namespace cuda
}  // namespace qwen3vl
