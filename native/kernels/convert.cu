// Conversions use the cuda_fp16/cuda_bf16 intrinsics, which round to nearest even on every architecture
// (emulated in fp32 integer ops on sm_61, where there is no native bf16).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "common.cuh"
#include "convert.cuh"
#include "dtype.h"

namespace qwen3vl {
namespace cuda {
namespace {

__device__ __forceinline__ float load_as_f32(const void* p, size_t i, qwen3vl_dtype t) {
    if (t == QWEN3VL_DTYPE_F16) return __half2float(static_cast<const __half*>(p)[i]);
    if (t == QWEN3VL_DTYPE_BF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void store_from_f32(void* p, size_t i, qwen3vl_dtype t, float v) {
    if (t == QWEN3VL_DTYPE_F16) static_cast<__half*>(p)[i] = __float2half_rn(v);
    else if (t == QWEN3VL_DTYPE_BF16) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    else static_cast<float*>(p)[i] = v;
}

__global__ void convert_kernel(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                               size_t count) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
        store_from_f32(dst, i, dst_dtype, load_as_f32(src, i, src_dtype));
}

}  // namespace

void convert(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count,
             cudaStream_t stream) {
    require(dst_dtype == src_dtype || (dtype_is_float(dst_dtype) && dtype_is_float(src_dtype)),
            std::string("cannot convert ") + dtype_name(src_dtype) + " to " + dtype_name(dst_dtype));
    if (count == 0) return;
    if (dst_dtype == src_dtype) {
        QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * dtype_size(dst_dtype), cudaMemcpyDeviceToDevice, stream));
        return;
    }
    constexpr unsigned block = 256;
    convert_kernel<<<grid_for(count, block), block, 0, stream>>>(dst, dst_dtype, src, src_dtype, count);
    QWEN3VL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace qwen3vl
