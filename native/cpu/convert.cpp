#include "convert.h"

#include <cstdint>
#include <cstring>
#include <string>

#include "cpu_features.h"
#include "dtype.h"
#include "error.h"

namespace qwen3vl {
namespace cpu {

// Called per row by some ops: the message is built only on failure.
static void check_pair(qwen3vl_dtype dst_dtype, qwen3vl_dtype src_dtype) {
    if (!dtype_valid(dst_dtype) || !dtype_valid(src_dtype)) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "unknown dtype");
    if (dst_dtype != src_dtype && !(dtype_is_float(dst_dtype) && dtype_is_float(src_dtype)))
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
             std::string("cannot convert ") + dtype_name(src_dtype) + " to " + dtype_name(dst_dtype));
}

static float load_scalar(const void* src, qwen3vl_dtype t, size_t i) {
    switch (t) {
        case QWEN3VL_DTYPE_F16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
        case QWEN3VL_DTYPE_BF16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
        default: return static_cast<const float*>(src)[i];
    }
}

static void store_scalar(void* dst, qwen3vl_dtype t, size_t i, float v) {
    switch (t) {
        case QWEN3VL_DTYPE_F16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
        case QWEN3VL_DTYPE_BF16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
        default: static_cast<float*>(dst)[i] = v; break;
    }
}

void convert_scalar(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) {
    check_pair(dst_dtype, src_dtype);
    if (dst_dtype == src_dtype) {
        std::memcpy(dst, src, count * dtype_size(dst_dtype));
        return;
    }
    for (size_t i = 0; i < count; ++i) store_scalar(dst, dst_dtype, i, load_scalar(src, src_dtype, i));
}

void convert(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) {
    check_pair(dst_dtype, src_dtype);
    if (dst_dtype == src_dtype || cpu_kernels() == CpuKernels::Scalar) {
        convert_scalar(dst, dst_dtype, src, src_dtype, count);
        return;
    }
    const auto* s16 = static_cast<const uint16_t*>(src);
    const auto* s32 = static_cast<const float*>(src);
    auto* d16 = static_cast<uint16_t*>(dst);
    auto* d32 = static_cast<float*>(dst);
    if (dst_dtype == QWEN3VL_DTYPE_F32 && src_dtype == QWEN3VL_DTYPE_BF16) return bf16_to_f32_avx2(d32, s16, count);
    if (dst_dtype == QWEN3VL_DTYPE_F32 && src_dtype == QWEN3VL_DTYPE_F16) return f16_to_f32_avx2(d32, s16, count);
    if (dst_dtype == QWEN3VL_DTYPE_BF16 && src_dtype == QWEN3VL_DTYPE_F32) return f32_to_bf16_avx2(d16, s32, count);
    if (dst_dtype == QWEN3VL_DTYPE_F16 && src_dtype == QWEN3VL_DTYPE_F32) return f32_to_f16_avx2(d16, s32, count);
    convert_scalar(dst, dst_dtype, src, src_dtype, count);  // f16 <-> bf16: rare, via f32
}

}  // namespace cpu
}  // namespace qwen3vl
