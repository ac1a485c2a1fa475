// Element conversion between f32, f16 and bf16 on host memory (and plain copies for equal types).
// convert_scalar is the reference; convert picks the AVX2/F16C kernels when the CPU has them.
#pragma once

#include <cstddef>

#include "qwen3vl.h"

namespace qwen3vl {
namespace cpu {

// Throws INVALID_ARGUMENT when one side is I32 and the other is not.
void convert(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count);
void convert_scalar(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count);

// AVX2 + F16C kernels (convert_avx2.cpp, compiled with those flags). Call only when cpu_kernels() allows.
void bf16_to_f32_avx2(float* dst, const uint16_t* src, size_t count);
void f32_to_bf16_avx2(uint16_t* dst, const float* src, size_t count);
void f16_to_f32_avx2(float* dst, const uint16_t* src, size_t count);
void f32_to_f16_avx2(uint16_t* dst, const float* src, size_t count);

}  // namespace cpu
}  // namespace qwen3vl
