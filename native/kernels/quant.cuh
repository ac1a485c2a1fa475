// Quantization of weights into the block formats on the device (core/quant.h is the reference: the same bits).
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "weight.h"

namespace qwen3vl {
namespace cuda {

// The Q8 planes of the dense src [rows, cols] (device memory): q [rows, cols], f16 scales [rows, cols / 32]. Waits
// for the kernel and raises INVALID_ARGUMENT naming the first non-finite weight (or overflowing block) in row-major
// order, with the host reference's message (rows counted from first_row). Not capturable (it reads its result back).
void quantize_q8(CudaBackend& be, int8_t* q, uint16_t* scales, const Weight& src, int64_t first_row);

// The weights n (a multiple of 32) Q8 weights stand for, d * q, into out as f32 (exact) or rounded to nearest even
// into bf16 (relative error up to 2^-8: d * q has up to 18 significant bits, bf16 8): q and out 16-byte aligned,
// scales 2-byte aligned. Launches on be.stream(); capture-safe.
void dequantize_q8(CudaBackend& be, void* out, qwen3vl_dtype ot, const int8_t* q, const uint16_t* scales, size_t n);

// The Q4 planes of the dense src [rows, cols] (cols a multiple of 256): nibbles [rows, cols / 2], 16-byte headers
// [rows, cols / 256], the host reference's bits; errors as quantize_q8's. Not capturable.
void quantize_q4(CudaBackend& be, uint8_t* nib, uint8_t* headers, const Weight& src, int64_t first_row);

// The weights n (a multiple of 256) Q4 weights stand for into out, f32 (as dequantize_q4 computes them) or rounded to
// bf16: nib and out 16-byte aligned. Launches on be.stream(); capture-safe.
void dequantize_q4(CudaBackend& be, void* out, qwen3vl_dtype ot, const uint8_t* nib, const uint8_t* headers, size_t n);

}  // namespace cuda
}  // namespace qwen3vl
