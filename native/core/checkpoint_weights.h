// Checkpoint weights as tensors on a backend, in the dtype a caller asks for: the C API's qwen3vl_checkpoint_tensor(_as)
// and the engine's own users. A weight stays in the mapping where it can (the CPU, its stored dtype); otherwise it is
// uploaded, converted (f32 / f16 / bf16), quantized (Q8), or dequantized from FP8 blocks first.
#pragma once

#include <memory>

#include "checkpoint.h"
#include "qwen3vl.h"
#include "tensor.h"

namespace qwen3vl {

// The dtype a weight is handed out in when none is asked for: its stored one; bf16 for an FP8 weight.
qwen3vl_dtype stored_dtype(const TensorView& v);

// v (a tensor of checkpoint) as dtype on b. A weight that cannot take dtype (I32, a vector or a ragged row as Q8) is
// INVALID_ARGUMENT naming it; a NaN in an FP8 weight is INVALID_ARGUMENT naming the weight [row, column]. The tensor
// keeps the checkpoint's mapping alive when it views it.
Tensor load_weight(const std::shared_ptr<Checkpoint>& checkpoint, Backend& b, const TensorView& v, qwen3vl_dtype dtype);

}  // namespace qwen3vl
