/*
 * qwen3vl_testing.h - ops the engine has but the binding does not call, exported only by the test build of the
 * library (libqwen3vl_testing, tests/CMakeLists.txt) so that the op suites can use them as oracles and building
 * blocks: the unfused pieces of the fused ops of qwen3vl.h. Not part of the shipped library or its ABI.
 * Conventions as in qwen3vl.h.
 */
#ifndef QWEN3VL_TESTING_H
#define QWEN3VL_TESTING_H

#include "qwen3vl.h"

#ifdef __cplusplus
extern "C" {
#endif

/** out[M, N] = silu(x * gate^T) * (x * up^T) with gate, up [N, K] (f32, f16 or bf16): the gated MLP's first half in
 * one pass over x. x and out take leading dimensions as in qwen3vl_op_linear; out must not overlap any input. */
QWEN3VL_API qwen3vl_status qwen3vl_op_linear_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* gate, const qwen3vl_tensor* up);
/** out = gelu(x * weight^T (+ bias)): a projection and the GELU after it (as qwen3vl_op_linear then qwen3vl_op_gelu,
 * bitwise on the CPU; tanh_approximation 1 for gelu_pytorch_tanh, 0 for the erf form). Shapes as qwen3vl_op_linear;
 * out must not overlap x, weight or bias. On a GPU with more than 8 rows the tanh form is part of the matrix
 * product's epilogue. */
QWEN3VL_API qwen3vl_status qwen3vl_op_linear_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight, QWEN3VL_OPTIONAL const qwen3vl_tensor* bias, int32_t tanh_approximation);
/** out = a + b (same shapes; out may be a or b). */
QWEN3VL_API qwen3vl_status qwen3vl_op_add(qwen3vl_tensor* out, const qwen3vl_tensor* a, const qwen3vl_tensor* b);
/** out = silu(gate) * up, elementwise. out may be gate or up. */
QWEN3VL_API qwen3vl_status qwen3vl_op_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* gate, const qwen3vl_tensor* up);
/** out = gelu(x) elementwise; tanh_approximation 1 for gelu_pytorch_tanh, 0 for the exact erf form. out may be x. */
QWEN3VL_API qwen3vl_status qwen3vl_op_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, int32_t tanh_approximation);
/** residual += x, then out = rms_norm(residual) * weight: the residual add and the next norm in one pass. out may be
 * x; neither out nor x may share memory with residual. */
QWEN3VL_API qwen3vl_status qwen3vl_op_add_rms_norm(qwen3vl_tensor* residual, qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight, float eps);
/** Softmax over the last dimension. out may be x. */
QWEN3VL_API qwen3vl_status qwen3vl_op_softmax(qwen3vl_tensor* out, const qwen3vl_tensor* x);
/** The cache-writing half of qwen3vl_op_qk_norm_rope_attention alone, in place: RMSNorm over head_dim of q and k,
 * M-RoPE, then k and v written to rows n_past .. n_past+T-1 of the caches; q and k hold the normalised, rotated values
 * afterwards. params as for qwen3vl_op_qk_norm_rope_attention with out NULL. */
QWEN3VL_API qwen3vl_status qwen3vl_op_qk_norm_rope_kv(const qwen3vl_qk_norm_rope_attention_params* params);

#ifdef __cplusplus
}
#endif

#endif /* QWEN3VL_TESTING_H */
