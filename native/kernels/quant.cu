// See quant.cuh. One warp per block of 32 weights: lane i holds weight i, the block's max |w| is a warp reduction,
// and the rounding is the reference's: d = f16(max|w| / 127) (IEEE division, round to nearest even), q =
// rint(w / f32(d)) clamped to +-127, zeros where d is 0.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "dtype.h"
#include "error.h"
#include "q4_arith.h"
#include "quant.cuh"
#include "quant.h"
#include "quant_q4_impl.h"

namespace qwen3vl {
namespace cuda {
namespace {

__device__ __forceinline__ float load_weight(const void* p, size_t i, qwen3vl_dtype t) {
    if (t == QWEN3VL_DTYPE_F16) return __half2float(static_cast<const __half*>(p)[i]);
    if (t == QWEN3VL_DTYPE_BF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    return static_cast<const float*>(p)[i];
}

// bad[0]: the smallest flat index of a non-finite weight; bad[1]: the smallest block index whose scale overflows.
__global__ void quantize_q8_kernel(int8_t* q, __half* scales, const void* src, qwen3vl_dtype st, size_t blocks,
                                   unsigned long long* bad) {
    const unsigned lane = threadIdx.x & 31u;
    const size_t warps = static_cast<size_t>(gridDim.x) * (blockDim.x / 32);
    for (size_t b = (static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; b < blocks; b += warps) {
        const size_t i = b * 32 + lane;
        const float w = load_weight(src, i, st);
        const bool finite = isfinite(w);
        const unsigned nonfinite = __ballot_sync(0xffffffffu, !finite);
        if (nonfinite) {
            if (lane == 0) atomicMin(&bad[0], static_cast<unsigned long long>(b * 32 + (__ffs(nonfinite) - 1)));
            continue;
        }
        float amax = fabsf(w);
        for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        const __half dh = __float2half_rn(__fdiv_rn(amax, 127.0f));
        const float d = __half2float(dh);
        if (!isfinite(d)) {
            if (lane == 0) atomicMin(&bad[1], static_cast<unsigned long long>(b));
            continue;
        }
        if (lane == 0) scales[b] = dh;
        const float r = d == 0.0f ? 0.0f : rintf(__fdiv_rn(w, d));
        q[i] = static_cast<int8_t>(fmaxf(-127.0f, fminf(127.0f, r)));
    }
}

// The bits of bf16(v), rounded to nearest even (through the raw struct: __bfloat16_as_ushort is sm_80+ in CUDA 11).
__device__ __forceinline__ unsigned bf16_bits(float v) {
    const __nv_bfloat16_raw r = __float2bfloat16_rn(v);
    return r.x;
}

// out[i] = d[i / 32] * q[i] (exact in f32: an f16 times an int8 has at most 18 significant bits) stored as f32 or
// rounded to nearest even into bf16. One thread per 16 weights (a 16-byte load, half a block) and its scale.
__global__ void dequantize_q8_kernel(void* out, qwen3vl_dtype ot, const int8_t* q, const unsigned short* d,
                                     size_t chunks) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t c = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks; c += stride) {
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(q) + c);
        const float s = __half2float(__ushort_as_half(__ldg(d + c / 2)));
        const unsigned words[4] = {u.x, u.y, u.z, u.w};
        float v[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) v[i] = s * static_cast<float>(static_cast<int8_t>(words[i / 4] >> (8 * (i % 4))));
        if (ot == QWEN3VL_DTYPE_BF16) {
            unsigned packed[8];
#pragma unroll
            for (int i = 0; i < 8; ++i)
                packed[i] = bf16_bits(v[2 * i]) | (bf16_bits(v[2 * i + 1]) << 16);
            uint4* o = reinterpret_cast<uint4*>(out) + 2 * c;
            o[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
            o[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
        } else {
            float4* o = reinterpret_cast<float4*>(out) + 4 * c;
#pragma unroll
            for (int i = 0; i < 4; ++i) o[i] = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
        }
    }
}

// Element `index` (row-major) of a matrix of `cols` columns whose row 0 is row first_row of the weight, as [row, column].
std::string at(size_t index, int64_t cols, int64_t first_row) {
    return "[" + std::to_string(static_cast<size_t>(first_row) + index / static_cast<size_t>(cols)) + ", " +
           std::to_string(index % static_cast<size_t>(cols)) + "]";
}

// The device side of the Q4 arithmetic (core/quant_q4_impl.h): the _rn intrinsics are never contracted into FMAs, so
// each operation rounds on its own as on the host.
struct DeviceArith {
    __device__ static float add(float a, float b) { return __fadd_rn(a, b); }
    __device__ static float sub(float a, float b) { return __fsub_rn(a, b); }
    __device__ static float mul(float a, float b) { return __fmul_rn(a, b); }
    __device__ static float div(float a, float b) { return __fdiv_rn(a, b); }
    __device__ static float neg(float a) { return -a; }
    __device__ static uint16_t to_f16(float v) { return __half_as_ushort(__float2half_rn(v)); }
    __device__ static float from_f16(uint16_t h) { return __half2float(__ushort_as_half(h)); }
};

// One thread per super-block of 256 (quantization runs once per load; the search per group dominates, not the loads).
// bad[0]: the smallest flat index of a non-finite weight; bad[1]: the smallest super-block whose scale overflows.
__global__ void quantize_q4_kernel(uint8_t* nib, uint8_t* headers, const void* src, qwen3vl_dtype st, size_t supers,
                                   unsigned long long* bad) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t b = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < supers; b += stride) {
        float w[256];
        bool finite = true;
        for (int i = 0; i < 256; ++i) {
            w[i] = load_weight(src, b * 256 + i, st);
            if (!isfinite(w[i]) && finite) {
                atomicMin(&bad[0], static_cast<unsigned long long>(b * 256 + i));
                finite = false;
            }
        }
        if (!finite) continue;
        if (q4impl::quantize_super<DeviceArith>(w, nib + b * 128, headers + b * 16))
            atomicMin(&bad[1], static_cast<unsigned long long>(b));
    }
}

// out[i] = (d * sc) * q - dmin * mn as core/quant.cpp computes it, f32 or rounded to bf16. One thread per group of 32
// (16 bytes of nibbles).
__global__ void dequantize_q4_kernel(void* out, qwen3vl_dtype ot, const uint8_t* nib, const uint8_t* headers,
                                     size_t groups) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t c = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < groups; c += stride) {
        float a, m;
        q4arith::group_a_m(headers + (c / 8) * 16, static_cast<int>(c % 8), &a, &m);
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(nib) + c);
        const unsigned words[4] = {u.x, u.y, u.z, u.w};
        float v[32];
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const unsigned byte = (words[j / 4] >> (8 * (j % 4))) & 0xffu;
            v[j] = q4arith::weight(a, byte & 15u, m);
            v[j + 16] = q4arith::weight(a, byte >> 4, m);
        }
        if (ot == QWEN3VL_DTYPE_BF16) {
            uint4* o = reinterpret_cast<uint4*>(out) + 4 * c;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                unsigned p[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) p[i] = bf16_bits(v[8 * k + 2 * i]) | (bf16_bits(v[8 * k + 2 * i + 1]) << 16);
                o[k] = make_uint4(p[0], p[1], p[2], p[3]);
            }
        } else {
            float4* o = reinterpret_cast<float4*>(out) + 8 * c;
#pragma unroll
            for (int k = 0; k < 8; ++k) o[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
        }
    }
}

}  // namespace

void quantize_q4(CudaBackend& be, uint8_t* nib, uint8_t* headers, const Weight& src, int64_t first_row) {
    if (be.capturing()) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q4: quantizing a weight is not recorded in a graph");
    require(src.cols % kQ4Super == 0, "q4: rows of " + std::to_string(src.cols) + " weights are not whole super-blocks");
    const size_t n = static_cast<size_t>(src.rows) * static_cast<size_t>(src.cols);
    if (n == 0) return;
    cudaStream_t stream = be.stream();
    CudaBackend::Scratch bad(be, 2 * sizeof(unsigned long long));
    QWEN3VL_CUDA_CHECK(cudaMemsetAsync(bad.as<void>(), 0xff, 2 * sizeof(unsigned long long), stream));
    const size_t supers = n / kQ4Super;
    constexpr unsigned threads = 128;
    quantize_q4_kernel<<<grid_for(supers, threads), threads, 0, stream>>>(nib, headers, src.data, src.dtype, supers,
                                                                         bad.as<unsigned long long>());
    QWEN3VL_CUDA_CHECK(cudaGetLastError());
    unsigned long long host[2];
    QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(host, bad.as<void>(), sizeof(host), cudaMemcpyDeviceToHost, stream));
    QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (host[0] != ~0ull) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q4: weight " + at(host[0], src.cols, first_row) + " is not finite");
    if (host[1] != ~0ull)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, q4_overflow_message(at(host[1], src.cols / kQ4Super, first_row)));
}

void dequantize_q4(CudaBackend& be, void* out, qwen3vl_dtype ot, const uint8_t* nib, const uint8_t* headers,
                   size_t n) {
    require(ot == QWEN3VL_DTYPE_BF16 || ot == QWEN3VL_DTYPE_F32,
            std::string("q4: dequantizing into ") + dtype_name(ot) + " (bf16 or f32 only)");
    require(n % kQ4Super == 0, "q4: " + std::to_string(n) + " weights are not whole super-blocks");
    require(reinterpret_cast<uintptr_t>(nib) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0,
            "q4: dequantizing unaligned planes");
    if (n == 0) return;
    constexpr unsigned threads = 256;
    const size_t groups = n / kQ4Group;
    dequantize_q4_kernel<<<grid_for(groups, threads), threads, 0, be.stream()>>>(out, ot, nib, headers, groups);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void quantize_q8(CudaBackend& be, int8_t* q, uint16_t* scales, const Weight& src, int64_t first_row) {
    if (be.capturing()) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q8: quantizing a weight is not recorded in a graph");
    require(src.cols % kQ8Block == 0, "q8: rows of " + std::to_string(src.cols) + " weights are not whole blocks");
    const size_t n = static_cast<size_t>(src.rows) * static_cast<size_t>(src.cols);
    if (n == 0) return;
    cudaStream_t stream = be.stream();
    CudaBackend::Scratch bad(be, 2 * sizeof(unsigned long long));
    QWEN3VL_CUDA_CHECK(cudaMemsetAsync(bad.as<void>(), 0xff, 2 * sizeof(unsigned long long), stream));
    const size_t blocks = n / 32;
    constexpr unsigned threads = 256;
    quantize_q8_kernel<<<grid_for(blocks * 32, threads), threads, 0, stream>>>(
        q, reinterpret_cast<__half*>(scales), src.data, src.dtype, blocks, bad.as<unsigned long long>());
    QWEN3VL_CUDA_CHECK(cudaGetLastError());
    unsigned long long host[2];
    QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(host, bad.as<void>(), sizeof(host), cudaMemcpyDeviceToHost, stream));
    QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (host[0] != ~0ull) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q8: weight " + at(host[0], src.cols, first_row) + " is not finite");
    if (host[1] != ~0ull)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, q8_overflow_message(at(host[1], src.cols / kQ8Block, first_row)));
}

void dequantize_q8(CudaBackend& be, void* out, qwen3vl_dtype ot, const int8_t* q, const uint16_t* scales, size_t n) {
    require(ot == QWEN3VL_DTYPE_BF16 || ot == QWEN3VL_DTYPE_F32,
            std::string("q8: dequantizing into ") + dtype_name(ot) + " (bf16 or f32 only)");
    require(n % kQ8Block == 0, "q8: " + std::to_string(n) + " weights are not whole blocks");
    require(reinterpret_cast<uintptr_t>(q) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                reinterpret_cast<uintptr_t>(scales) % 2 == 0,
            "q8: dequantizing unaligned planes");
    if (n == 0) return;
    constexpr unsigned threads = 256;
    const size_t chunks = n / 16;
    dequantize_q8_kernel<<<grid_for(chunks, threads), threads, 0, be.stream()>>>(
        out, ot, q, reinterpret_cast<const unsigned short*>(scales), chunks);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace qwen3vl
