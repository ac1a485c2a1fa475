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

// The best (value, index) of the block's threads, in lane 0 of warp 0 (first index on ties; n: no element). sv and
// si hold 32 entries in shared memory; the call may be repeated with them.
__device__ __forceinline__ ArgBest block_best(ArgBest best, int64_t n, float* sv, int64_t* si) {
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
    best = warp_best(best);
    __syncthreads();  // a previous use of sv / si is finished
    if (lane == 0) {
        sv[warp] = best.v;
        si[warp] = best.i;
    }
    __syncthreads();
    if (warp == 0) {
        best = lane < warps ? ArgBest{sv[lane], si[lane]} : ArgBest{-INFINITY, n};
        best = warp_best(best);
    }
    return best;
}

__global__ void argmax_kernel(int32_t* out, const float* x, int64_t rows, int64_t n) {
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * n;
        ArgBest best{-INFINITY, n};  // index n: loses every tie against a real element
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) best = better(best, ArgBest{xr[i], i});
        best = block_best(best, n, sv, si);
        if (threadIdx.x == 0) out[r] = static_cast<int32_t>(best.i);
    }
}

// Long rows (the logits of a decoding step: one row of ~152k) would leave one block scanning alone: split each row
// into `parts` ranges, one block each, writing its best (value, index) to scratch; argmax_parts_kernel then picks
// the best part per row. Ties keep the lowest index at both levels, so the result equals argmax_kernel's.
__global__ void argmax_partial_kernel(float* part_v, int64_t* part_i, const float* x, int64_t rows, int64_t n,
                                      int64_t parts, int64_t span) {
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    for (int64_t b = blockIdx.x; b < rows * parts; b += gridDim.x) {
        const int64_t r = b / parts, lo = (b % parts) * span, hi = lo + span < n ? lo + span : n;
        const float* xr = x + r * n;
        ArgBest best{-INFINITY, n};
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) best = better(best, ArgBest{xr[i], i});
        best = block_best(best, n, sv, si);
        if (threadIdx.x == 0) {
            part_v[b] = best.v;
            part_i[b] = best.i;
        }
    }
}

__global__ void argmax_parts_kernel(int32_t* out, const float* part_v, const int64_t* part_i, int64_t rows,
                                    int64_t n, int64_t parts) {
    const unsigned lane = threadIdx.x % kWarp;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        ArgBest best{-INFINITY, n};
        for (int64_t p = lane; p < parts; p += kWarp) best = better(best, ArgBest{part_v[r * parts + p], part_i[r * parts + p]});
        best = warp_best(best);
        if (lane == 0) out[r] = static_cast<int32_t>(best.i);
    }
}

constexpr int64_t kArgmaxSpan = 4096;  // elements per block when a row is split

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
    const int64_t parts = (n + kArgmaxSpan - 1) / kArgmaxSpan;
    if (rows >= be.multiprocessors() || parts < 4) {
        argmax_kernel<<<grid_rows(rows), row_block(n, 1024), 0, be.stream()>>>(out, x, rows, n);
        QWEN3VL_CUDA_CHECK_LAUNCH();
        return;
    }
    CudaBackend::Scratch part_v(be, size_t(rows * parts) * sizeof(float));
    CudaBackend::Scratch part_i(be, size_t(rows * parts) * sizeof(int64_t));
    argmax_partial_kernel<<<grid_rows(rows * parts), 256, 0, be.stream()>>>(part_v.as<float>(), part_i.as<int64_t>(),
                                                                             x, rows, n, parts, kArgmaxSpan);
    QWEN3VL_CUDA_CHECK_LAUNCH();
    argmax_parts_kernel<<<grid_rows(rows), kWarp, 0, be.stream()>>>(out, part_v.as<float>(), part_i.as<int64_t>(),
                                                                    rows, n, parts);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace qwen3vl
