// The CPU's Q8 and Q4 quantization kernels (the reference is core/quant.h).
#pragma once

#include <cstdint>

namespace qwen3vl {
namespace cpu {

// Quantizes one row of cols weights (a multiple of 32) as quantize_q8 does, bit for bit; returns false, leaving the
// row to the reference (which names the problem), when a weight is not finite or a block's scale overflows f16.
// AVX2 + F16C; call only when cpu_kernels() allows.
bool quantize_q8_row_avx2(const float* w, int64_t cols, int8_t* q, uint16_t* d);

// Quantizes one row of cols weights (a multiple of 256) as quantize_q4_row does, bit for bit (quant_q4_avx2.cpp);
// returns false, leaving the row to the reference, when a weight is not finite or a super-block's d or dmin overflows
// f16. AVX2 + F16C; call only when cpu_kernels() allows.
bool quantize_q4_row_avx2(const float* w, int64_t cols, uint8_t* nib, uint8_t* headers);

}  // namespace cpu
}  // namespace qwen3vl
