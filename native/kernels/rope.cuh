// Rotary position embeddings on device memory (host entry points; kernels in rope.cu). Semantics as
// native/cpu/rope.h: inv_freq and the angles in f32, cos / sin through double rounded once, rotate-half.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "op_params.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

using qwen3vl::QkNormRopeKv;  // native/core/op_params.h
void qk_norm_rope_kv(CudaBackend& be, const QkNormRopeKv& a);

// In place on the q and k parts of qkv [T, 3, H, D]; positions: device i32 [T, 2] (row, col).
void rope_vision(CudaBackend& be, float* qkv, int64_t tokens, int64_t heads, int64_t head_dim,
                 const int32_t* positions, float theta);

}  // namespace cuda
}  // namespace qwen3vl
