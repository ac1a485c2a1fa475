// Attention with online softmax on device memory (host entry point; attention.cu picks the decode kernel of
// attention_decode.cu, the tensor-core kernel of attention_flash.cu or its own fp32 kernel). Semantics as
// native/cpu/attention.h: scale 1/sqrt(D), CAUSAL against a KV cache (GQA; n_past possibly read from device memory,
// see AttentionArgs::n_past_device) or SEGMENTS over a fused qkv. Capture-safe: kernels on be.stream(), scratch from
// the pool, no host synchronisation.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "op_params.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

using qwen3vl::AttentionArgs;  // native/core/op_params.h

void attention(CudaBackend& be, const AttentionArgs& a);

// qk_norm_rope_kv(rope) then attention(a) (CAUSAL, a.q == rope.q, caches rope.k_cache / v_cache): one kernel when the
// decoding kernel applies (at most 8 query rows per KV head; q and k then keep their raw values), else the two.
void qk_norm_rope_attention(CudaBackend& be, const QkNormRopeKv& rope, const AttentionArgs& a);

}  // namespace cuda
}  // namespace qwen3vl
