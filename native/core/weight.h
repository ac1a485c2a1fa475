// A weight as every backend's ops take it: model parameters (a projection's matrix, a norm's vector, a bias, an
// embedding table), read-only, possibly a view into a memory-mapped checkpoint (any alignment).
//
// Dense dtypes (f32, f16, bf16) are described by data and dtype alone. A block-quantized format adds its per-block
// scales (and zero points where it has them) here, so it reaches the kernels through the op signatures that exist:
// Q8 (core/quant.h) is data = int8 [rows, cols], scales = f16 [rows, cols / 32], block_rows 1, block_cols 32; Q4 is
// data = nibbles [rows, cols / 2], scales = the 16-byte super-block headers [rows, cols / 256] (raw bytes holding f16 d
// and dmin and the packed 6-bit group scales and mins; scale_dtype says F16 for d / dmin), block_rows 1, block_cols 256. The
// C API passes a block format only to the ops that take it (OpArgs::matrix); a backend without a kernel for it refuses
// it by name. See docs/ARCHITECTURE.md, "Add a weight format".
#pragma once

#include <cstdint>

#include "qwen3vl.h"

namespace qwen3vl {

struct Weight {
    const void* data = nullptr;  // NULL: no weight (an optional bias or norm that is absent)
    qwen3vl_dtype dtype = QWEN3VL_DTYPE_F32;
    // Shape [rows, cols] (a vector: rows 1), as the C API checked it; 0 where a kernel-level caller does not set it.
    int64_t rows = 0;
    int64_t cols = 0;
    // Block formats only (unset for dense dtypes): one scale (of scale_dtype) per block of block_rows x block_cols
    // weights, row-major over the blocks, and zero points of the same layout when the format has them.
    const void* scales = nullptr;
    qwen3vl_dtype scale_dtype = QWEN3VL_DTYPE_F32;
    const void* zeros = nullptr;
    int32_t block_rows = 0;
    int32_t block_cols = 0;

    bool present() const { return data != nullptr; }
    bool dense() const { return scales == nullptr && zeros == nullptr; }
};

}  // namespace qwen3vl
