// One block per output row (grid-stride over rows), threads across the width. The position-embedding taps use
// explicitly rounded f32 operations (__fmul_rn, __fsub_rn): a contracted FMA could move a sample point across an
// integer and pick another table row than the CPU reference and transformers.
#include "common.cuh"
#include "embedding.cuh"
#include "q4_arith.h"

namespace qwen3vl {
namespace cuda {
namespace {

constexpr unsigned kBlock = 256;

// Ids are checked here rather than on the host (a host check would wait for the ids and cannot run inside a
// captured graph): an id outside the table zeroes its row and raises the backend's device error flag.
// A Q8 table (tt Q8, scales its f16 block scales) gives d * q, exact in f32; a Q4 table (tt Q4, scales its 16-byte
// super-block headers) (d sc) q - dmin mn as core/quant.cpp's dequantize_q4 computes it, bit for bit.
__global__ void embedding_kernel(float* out, const void* table, qwen3vl_dtype tt, const void* scales,
                                 const int32_t* ids, int64_t tokens, int64_t width, int64_t rows, int32_t* error_flag) {
    for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
        const int32_t id = ids[t];
        if (id < 0 || id >= rows) {
            for (int64_t c = threadIdx.x; c < width; c += blockDim.x) out[t * width + c] = 0.0f;
            if (threadIdx.x == 0) *reinterpret_cast<volatile int32_t*>(error_flag) = CudaBackend::kEmbeddingIdOutOfRange;
            continue;
        }
        const size_t base = size_t(id) * size_t(width);
        if (tt == QWEN3VL_DTYPE_Q8) {
            const auto* q = static_cast<const int8_t*>(table) + base;
            const auto* d = static_cast<const __half*>(scales) + base / 32;
            for (int64_t c = threadIdx.x; c < width; c += blockDim.x)
                out[t * width + c] = __half2float(d[c / 32]) * static_cast<float>(q[c]);
            continue;
        }
        if (tt == QWEN3VL_DTYPE_Q4) {  // width is a multiple of 256: a row is whole super-blocks
            const auto* nib = static_cast<const uint8_t*>(table) + base / 2;
            const auto* hdr = static_cast<const uint8_t*>(scales) + base / 256 * 16;
            for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
                float a, m;
                q4arith::group_a_m(hdr + (c / 256) * 16, int((c / 32) % 8), &a, &m);
                const int j = int(c % 32);
                const unsigned byte = nib[(c / 32) * 16 + (j % 16)];
                out[t * width + c] = q4arith::weight(a, j < 16 ? byte & 15u : byte >> 4, m);
            }
            continue;
        }
        for (int64_t c = threadIdx.x; c < width; c += blockDim.x) out[t * width + c] = load_f32(table, tt, base + size_t(c));
    }
}

// The rows of a scatter, checked on the device like the ids above: each must lie in 0 .. x_rows - 1 and appear once
// (seen: x_rows zeroed counters). A bad set raises the device error flag; the scatter then skips rows outside x (so
// no write leaves it) and its result is not meaningful.
__global__ void check_scatter_rows_kernel(const int32_t* rows, int64_t count, int64_t x_rows, int32_t* seen,
                                          int32_t* error_flag) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
        const int32_t r = rows[i];
        if (r < 0 || r >= x_rows || atomicAdd(seen + r, 1) != 0)
            *reinterpret_cast<volatile int32_t*>(error_flag) = CudaBackend::kScatterRowsInvalid;
    }
}

__global__ void scatter_rows_kernel(float* x, int64_t x_rows, const int32_t* rows, const float* src, int64_t count,
                                    int64_t width, bool accumulate) {
    for (int64_t r = blockIdx.x; r < count; r += gridDim.x) {
        const int32_t row = rows[r];
        if (row < 0 || row >= x_rows) continue;
        float* dst = x + int64_t(row) * width;
        const float* s = src + r * width;
        for (int64_t c = threadIdx.x; c < width; c += blockDim.x) dst[c] = accumulate ? dst[c] + s[c] : s[c];
    }
}

// torch.linspace(0, end, n)[i] in f32 as native/cpu/embedding.cpp's linspace_f32.
__device__ __forceinline__ float linspace_f32(float end, int64_t n, int64_t i) {
    if (n == 1) return 0.0f;
    const float step = __fdiv_rn(end, static_cast<float>(n - 1));
    return i < n / 2 ? __fmul_rn(step, static_cast<float>(i))
                     : __fsub_rn(end, __fmul_rn(step, static_cast<float>(n - 1 - i)));
}

struct Taps {
    int64_t lo, hi;
    float d;
};

__device__ __forceinline__ Taps taps(int64_t side, int64_t n, int64_t i) {
    const float v = linspace_f32(static_cast<float>(side - 1), n, i);
    const int64_t lo = static_cast<int64_t>(v);
    const int64_t hi = lo + 1 < side - 1 ? lo + 1 : side - 1;
    return {lo, hi, __fsub_rn(v, static_cast<float>(lo))};
}

__global__ void position_embedding_kernel(float* out, const void* table, qwen3vl_dtype tt, int64_t side,
                                          int64_t width, int64_t grid_h, int64_t grid_w, int64_t merge) {
    const int64_t blocks_w = grid_w / merge, rows = grid_h * grid_w;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t iw = r % merge, ih = (r / merge) % merge, block = r / (merge * merge);
        const int64_t y = (block / blocks_w) * merge + ih, x = (block % blocks_w) * merge + iw;
        const Taps ty = taps(side, grid_h, y), tx = taps(side, grid_w, x);
        const float oy = __fsub_rn(1.0f, ty.d), ox = __fsub_rn(1.0f, tx.d);
        const float w0 = __fmul_rn(oy, ox), w1 = __fmul_rn(oy, tx.d), w2 = __fmul_rn(ty.d, ox),
                    w3 = __fmul_rn(ty.d, tx.d);
        const size_t s0 = size_t((ty.lo * side + tx.lo) * width), s1 = size_t((ty.lo * side + tx.hi) * width),
                     s2 = size_t((ty.hi * side + tx.lo) * width), s3 = size_t((ty.hi * side + tx.hi) * width);
        for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
            const size_t u = size_t(c);
            float v = __fmul_rn(load_f32(table, tt, s0 + u), w0);
            v = __fadd_rn(v, __fmul_rn(load_f32(table, tt, s1 + u), w1));
            v = __fadd_rn(v, __fmul_rn(load_f32(table, tt, s2 + u), w2));
            v = __fadd_rn(v, __fmul_rn(load_f32(table, tt, s3 + u), w3));
            out[r * width + c] = v;
        }
    }
}

}  // namespace

void embedding(CudaBackend& be, float* out, const void* table, qwen3vl_dtype tt, const void* scales, int64_t rows,
               const int32_t* ids, int64_t tokens, int64_t width) {
    if (tokens <= 0 || width <= 0) return;
    be.activate();
    embedding_kernel<<<grid_rows(tokens), row_block(width, kBlock), 0, be.stream()>>>(
        out, table, tt, scales, ids, tokens, width, rows, be.device_error_flag());
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void scatter_rows(CudaBackend& be, float* x, int64_t x_rows, const int32_t* rows, const float* src, int64_t count,
                  int64_t width, bool accumulate) {
    if (count <= 0) return;
    be.activate();
    CudaBackend::Scratch seen(be, size_t(x_rows) * sizeof(int32_t));
    if (x_rows > 0) QWEN3VL_CUDA_CHECK(cudaMemsetAsync(seen.as<int32_t>(), 0, size_t(x_rows) * sizeof(int32_t), be.stream()));
    check_scatter_rows_kernel<<<grid_for(size_t(count), kBlock), kBlock, 0, be.stream()>>>(
        rows, count, x_rows, seen.as<int32_t>(), be.device_error_flag());
    QWEN3VL_CUDA_CHECK_LAUNCH();
    if (width <= 0) return;
    scatter_rows_kernel<<<grid_rows(count), row_block(width, kBlock), 0, be.stream()>>>(x, x_rows, rows, src, count,
                                                                                         width, accumulate);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void position_embedding(CudaBackend& be, float* out, const void* table, qwen3vl_dtype tt, int64_t side, int64_t width,
                        int64_t grid_h, int64_t grid_w, int64_t merge) {
    const int64_t rows = grid_h * grid_w;
    if (rows <= 0 || width <= 0) return;
    be.activate();
    position_embedding_kernel<<<grid_rows(rows), row_block(width, kBlock), 0, be.stream()>>>(
        out, table, tt, side, width, grid_h, grid_w, merge);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace qwen3vl
