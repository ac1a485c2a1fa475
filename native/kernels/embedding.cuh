// Row gathers and scatters on device memory: the token embedding lookup, the scatter of vision features into the
// text sequence, and the vision position embedding (host entry points; kernels in embedding.cu). Semantics as
// native/cpu/embedding.h. embedding() checks its ids on the device (an id outside the table's `rows` zeroes its
// output row and raises the backend's device error flag); scatter_rows checks its rows there too (in range, none
// twice; a bad set raises the flag). Neither waits for the GPU: capture-safe.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

// table [rows, width] of dtype tt; a Q8 table (width a multiple of 32) with its f16 scales [rows, width / 32]
// gives the dequantized rows d * q, exact in f32; a Q4 table (width a multiple of 256) with its super-block headers
// [rows, width / 256] (16 bytes each) the rows as core/quant.h's dequantize_q4 gives them, bit for bit (else scales
// is unused).
void embedding(CudaBackend& be, float* out, const void* table, qwen3vl_dtype tt, const void* scales, int64_t rows,
               const int32_t* ids, int64_t tokens, int64_t width);
void scatter_rows(CudaBackend& be, float* x, int64_t x_rows, const int32_t* rows, const float* src, int64_t count,
                  int64_t width, bool accumulate);
void position_embedding(CudaBackend& be, float* out, const void* table, qwen3vl_dtype tt, int64_t side, int64_t width,
                        int64_t grid_h, int64_t grid_w, int64_t merge);

}  // namespace cuda
}  // namespace qwen3vl
