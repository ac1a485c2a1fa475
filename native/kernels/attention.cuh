// Attention with online softmax on device memory (host entry point; kernel in attention.cu). Semantics as
// native/cpu/attention.h: scale 1/sqrt(D), CAUSAL against a KV cache (GQA) or SEGMENTS over a fused qkv.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

struct AttentionArgs {
    float* out;      // [T, Hq, D]
    const float* q;  // query of token t, head h at q + t * q_stride + h * D
    int64_t q_stride;
    const void* k;   // key j of KV head g at k + j * kv_stride + g * D (elements of kv_dtype); v likewise
    const void* v;
    qwen3vl_dtype kv_dtype;
    int64_t kv_stride;
    int64_t tokens, q_heads, kv_heads, head_dim;
    bool causal;
    int64_t n_past;            // CAUSAL
    const int32_t* segments;   // SEGMENTS: device array of n_segments + 1 cumulative offsets from 0 to T
    int64_t n_segments;
};

void attention(CudaBackend& be, const AttentionArgs& a);

}  // namespace cuda
}  // namespace qwen3vl
