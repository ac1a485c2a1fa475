// One block per row (grid-stride over rows). argmax reduces (value, index) pairs with an order that is associative
// and commutative (NaN above everything, then larger value, then lower index), so any reduction tree gives the
// first index of the maximum, as the sequential CPU loop does.
#include "common.cuh"
#include "reduce.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

__global__ void softmax_kernel(float* out, const float* x, int64_t rows, int64_t n) {
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * n;
        float* yr = out + r * n;
        float m = -INFINITY;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, xr[i]);
        m = block_max(m, red);
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float e = expf(xr[i] - m);
            yr[i] = e;
            s += e;
        }
        const float sum = block_sum(s, red);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] /= sum;
    }
}

struct ArgBest {
    float v;
    int64_t i;
};

__device__ __forceinline__ ArgBest better(ArgBest a, ArgBest b) {
    const bool an = isnan(a.v), bn = isnan(b.v);
    if (an != bn) return an ? a : b;
    if (!an && a.v != b.v) return a.v > b.v ? a : b;
    return a.i <= b.i ? a : b;
}

__device__ __forceinline__ ArgBest warp_best(ArgBest a) {
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) {
        ArgBest b;
        b.v = __shfl_xor_sync(0xffffffffu, a.v, o);
        b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
        a = better(a, b);
    }
    return a;
}

__global__ void argmax_kernel(int32_t* out, const float* x, int64_t rows, int64_t n) {
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * n;
        ArgBest best{-INFINITY, n};  // index n: loses every tie against a real element
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) best = better(best, ArgBest{xr[i], i});
        best = warp_best(best);
        __syncthreads();
        if (lane == 0) {
            sv[warp] = best.v;
            si[warp] = best.i;
        }
        __syncthreads();
        if (warp == 0) {
            best = lane < warps ? ArgBest{sv[lane], si[lane]} : ArgBest{-INFINITY, n};
            best = warp_best(best);
            if (lane == 0) out[r] = static_cast<int32_t>(best.i);
        }
    }
}

}  // namespace

void softmax(CudaBackend& be, float* out, const float* x, int64_t rows, int64_t n) {
    if (rows <= 0) return;
    be.activate();
    softmax_kernel<<<grid_rows(rows), row_block(n, 1024), 0, be.stream()>>>(out, x, rows, n);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void argmax(CudaBackend& be, int32_t* out, const float* x, int64_t rows, int64_t n) {
    if (rows <= 0) return;
    be.activate();
    argmax_kernel<<<grid_rows(rows), row_block(n, 1024), 0, be.stream()>>>(out, x, rows, n);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace qwen3vl
