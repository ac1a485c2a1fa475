// Quantization of weights into the block formats on the device (core/quant.h is the reference: the same bits).
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "weight.h"

namespace qwen3vl {
namespace cuda {

// The Q8 planes of the dense src [rows, cols] (device memory): q [rows, cols], f16 scales [rows, cols / 32]. Waits
// for the kernel and raises INVALID_ARGUMENT naming the first non-finite weight (or overflowing block) in row-major
// order, with the host reference's message. Not capturable (it reads its result back).
void quantize_q8(CudaBackend& be, int8_t* q, uint16_t* scales, const Weight& src);

}  // namespace cuda
}  // namespace qwen3vl
