// Rotary position embeddings on device memory (host entry points; kernels in rope.cu). Semantics as
// native/cpu/rope.h: inv_freq and the angles in f32, cos / sin through double rounded once, rotate-half.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

// The text attention prologue in one kernel: per token, RMSNorm of every q and k head, interleaved M-RoPE, then k
// and v written to cache rows n_past + t. section holds mrope_section[0..2].
struct QkNormRopeKv {
    float* q;        // [T, Hq, D]
    float* k;        // [T, Hkv, D]
    const float* v;  // [T, Hkv, D]
    int64_t tokens, q_heads, kv_heads, head_dim;
    const void* q_norm;
    qwen3vl_dtype q_norm_dtype;
    const void* k_norm;
    qwen3vl_dtype k_norm_dtype;
    float eps;
    const int32_t* positions;  // device [3, T]
    float theta;
    int64_t section[3];
    void* k_cache;  // [capacity, Hkv, D]
    void* v_cache;
    qwen3vl_dtype cache_dtype;
    int64_t n_past;
};
void qk_norm_rope_kv(CudaBackend& be, const QkNormRopeKv& a);

// In place on the q and k parts of qkv [T, 3, H, D]; positions: device i32 [T, 2] (row, col).
void rope_vision(CudaBackend& be, float* qkv, int64_t tokens, int64_t heads, int64_t head_dim,
                 const int32_t* positions, float theta);

}  // namespace cuda
}  // namespace qwen3vl
