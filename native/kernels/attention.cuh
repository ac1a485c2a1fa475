// Attention with online softmax on device memory (host entry point; kernel in attention.cu). Semantics as
// native/cpu/attention.h: scale 1/sqrt(D), CAUSAL against a KV cache (GQA) or SEGMENTS over a fused qkv.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "op_params.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

using qwen3vl::AttentionArgs;  // native/core/op_params.h

void attention(CudaBackend& be, const AttentionArgs& a);

}  // namespace cuda
}  // namespace qwen3vl
