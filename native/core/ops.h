// The ops a backend implements, one interface per op family. Backend (core/backend.h) inherits them all; the CPU
// backend implements them in native/cpu (cpu_ops.cpp), the CUDA backend in native/kernels (cuda_ops.cu). The C API
// (native/capi) checks every argument it can check without reading tensor contents (presence, backend, dtype,
// shape, ranges, aliasing: capi/op_args.h) and then calls the op on the tensors' backend; the backend checks what
// lives in the tensors (token ids, segment offsets, n_past read from memory) the way its memory allows: on the host at
// once, on a device in the kernel (raising the backend's device error flag, reported by the next read).
//
// Pointers are the backend's memory (host for the CPU, device for CUDA). x and out arrays are f32 and row-major;
// weights are Weight (core/weight.h). Ops may return before the work is done (CUDA: queued on the backend's stream)
// and are safe under graph capture unless noted. A fused op's result equals its composition up to the rounding of
// a different summation order (each backend's fusion is its own choice; the CPU runs some as the composition).
#pragma once

#include <cstdint>

#include "op_params.h"
#include "weight.h"

namespace qwen3vl {

// Each family is one list, X(return type, name, (parameters)), from which its interface and every backend's
// declarations are written (QWEN3VL_OPS_OVERRIDES), so a signature is written once.
#define QWEN3VL_PURE_OP(ret, name, params) virtual ret name params = 0;
#define QWEN3VL_OVERRIDE_OP(ret, name, params) ret name params override;

#define QWEN3VL_ELEMENTWISE_OPS(X) \
    /* out = a + b; out may alias a or b. */                                                                           \
    X(void, add, (float* out, const float* a, const float* b, int64_t n))                                              \
    /* out = silu(gate) * up; out may alias gate or up. */                                                             \
    X(void, swiglu, (float* out, const float* gate, const float* up, int64_t n))                                       \
    /* out = gelu(x), tanh or exact erf form; out may alias x. */                                                      \
    X(void, gelu, (float* out, const float* x, int64_t n, bool tanh_approximation))

class ElementwiseOps {
public:
    QWEN3VL_ELEMENTWISE_OPS(QWEN3VL_PURE_OP)

protected:
    ~ElementwiseOps() = default;
};

// Over the last dimension n of `rows` rows; w and b [n].
#define QWEN3VL_NORM_OPS(X) \
    /* out = x / sqrt(mean(x^2) + eps) * w; out may be x. */                                                           \
    X(void, rms_norm, (float* out, const float* x, const Weight& w, int64_t rows, int64_t n, float eps))               \
    /* residual += x, then out = rms_norm(residual) * w; out may be x, must not overlap residual. */                   \
    X(void, add_rms_norm, (float* residual, float* out, const float* x, const Weight& w, int64_t rows, int64_t n,      \
      float eps))                                                                                                      \
    /* out = (x - mean) / sqrt(var + eps) * w + b; out may be x. */                                                    \
    X(void, layer_norm, (float* out, const float* x, const Weight& w, const Weight& b, int64_t rows, int64_t n,        \
      float eps))

class NormOps {
public:
    QWEN3VL_NORM_OPS(QWEN3VL_PURE_OP)

protected:
    ~NormOps() = default;
};

// out[M, N] = x[M, K] * w[N, K]^T (+ bias[N]) and the fusions around it. An absent bias or norm is a Weight whose
// data is NULL. Outputs must not overlap their inputs or weights except where noted.
#define QWEN3VL_LINEAR_OPS(X) \
    X(void, linear, (float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,                     \
      const Weight& bias))                                                                                             \
    /* proj[i].out = y * proj[i].w^T for i < count (1..3), y = rms_norm(x) * norm (eps), or x when norm is absent. */  \
    X(void, norm_linear, (const Projection* proj, int count, const float* x, int64_t M, int64_t K, const Weight& norm, \
      float eps))                                                                                                      \
    /* out = silu(y gate^T) * (y up^T), y as in norm_linear. */                                                        \
    X(void, norm_linear_swiglu, (float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& norm,      \
      float eps, const Weight& gate, const Weight& up))                                                                \
    /* out = residual + (x w^T + bias); out may be residual. */                                                        \
    X(void, linear_residual, (float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,            \
      const Weight& bias, const float* residual))                                                                      \
    /* out = gelu(x w^T + bias), tanh or erf form. */                                                                  \
    X(void, linear_gelu, (float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,                \
      const Weight& bias, bool tanh_approximation))                                                                    \
    /* out = y w^T + bias, y = layer_norm(x) * norm_weight + norm_bias (eps), both present. */                         \
    X(void, layer_norm_linear, (float* out, const float* x, int64_t M, int64_t K, int64_t N,                           \
      const Weight& norm_weight, const Weight& norm_bias, float eps, const Weight& w, const Weight& bias))             \
    /* The vision GELU MLP (op_params.h). residual may be NULL or out; out may be x (x is consumed first). */          \
    X(void, mlp_gelu, (float* out, const float* x, int64_t M, int64_t K, const MlpGelu& mlp, const float* residual))

class LinearOps {
public:
    QWEN3VL_LINEAR_OPS(QWEN3VL_PURE_OP)

protected:
    ~LinearOps() = default;
};

#define QWEN3VL_ROPE_OPS(X) \
    /* The text attention prologue (op_params.h): q/k RMSNorm, interleaved M-RoPE, k and v into the caches. */         \
    X(void, qk_norm_rope_kv, (const QkNormRopeKv& a))                                                                  \
    /* 2-D rotary of the q and k parts of a fused vision qkv [tokens, 3, heads, head_dim] in place; positions          \
       [tokens, 2] (row, column). */                                                                                   \
    X(void, rope_vision, (float* qkv, int64_t tokens, int64_t heads, int64_t head_dim, const int32_t* positions,       \
      float theta))

class RopeOps {
public:
    QWEN3VL_ROPE_OPS(QWEN3VL_PURE_OP)

protected:
    ~RopeOps() = default;
};

#define QWEN3VL_ATTENTION_OPS(X) \
    /* Softmax attention, scale 1/sqrt(D): CAUSAL over a KV cache (GQA) or SEGMENTS (block-diagonal) over a fused      \
       qkv. */                                                                                                         \
    X(void, attention, (const AttentionArgs& a))                                                                       \
    /* qk_norm_rope_kv(rope) then attention(a) (CAUSAL, a.q == rope.q, caches rope.k_cache / v_cache). */              \
    X(void, qk_norm_rope_attention, (const QkNormRopeKv& rope, const AttentionArgs& a))

class AttentionOps {
public:
    QWEN3VL_ATTENTION_OPS(QWEN3VL_PURE_OP)

protected:
    ~AttentionOps() = default;
};

#define QWEN3VL_EMBEDDING_OPS(X) \
    /* out[t] = table[ids[t]] as f32; table [rows, width] (table.rows, table.cols). An id outside the table is         \
       refused (CPU) or zeroes its row and raises the device error flag (CUDA). */                                     \
    X(void, embedding, (float* out, const Weight& table, const int32_t* ids, int64_t tokens))                          \
    /* x[rows[i]] = src[i] (or += with accumulate) for i < count; x [x_rows, width]. rows must be distinct and in 0    \
       .. x_rows - 1: the backend refuses others. */                                                                   \
    X(void, scatter_rows, (float* x, int64_t x_rows, const int32_t* rows, const float* src, int64_t count,             \
      int64_t width, bool accumulate))                                                                                 \
    /* The vision position embedding: table [side * side, width] (table.cols the width) bilinearly interpolated to     \
       grid_h x grid_w, in the merge x merge block order of the patch merger. */                                       \
    X(void, position_embedding, (float* out, const Weight& table, int64_t side, int64_t grid_h, int64_t grid_w,        \
      int64_t merge))

class EmbeddingOps {
public:
    QWEN3VL_EMBEDDING_OPS(QWEN3VL_PURE_OP)

protected:
    ~EmbeddingOps() = default;
};

// Over the last dimension n of `rows` rows.
#define QWEN3VL_REDUCE_OPS(X) \
    X(void, softmax, (float* out, const float* x, int64_t rows, int64_t n))                                            \
    /* The index of each row's largest value (the first of ties; NaN is largest). */                                   \
    X(void, argmax, (int32_t* out, const float* x, int64_t rows, int64_t n))                                           \
    /* The k largest values of each row, in descending order, and their indices (ties by the lower index, NaN above    \
       everything: cpu/reduce.h). */                                                                                   \
    X(void, top_k, (float* values, int32_t* indices, const float* x, int64_t rows, int64_t n, int64_t k))

class ReduceOps {
public:
    QWEN3VL_REDUCE_OPS(QWEN3VL_PURE_OP)

protected:
    ~ReduceOps() = default;
};

// Conversions of weights into the block formats (core/quant.h), as the host reference computes them, bit for bit.
#define QWEN3VL_WEIGHT_OPS(X) \
    /* The Q8 planes of src (dense, [src.rows, src.cols], cols a multiple of 32): q [rows, cols] and f16 scales       \
       [rows, cols / 32] (quantize_q8 per row). A non-finite weight or an overflowing scale: INVALID_ARGUMENT naming   \
       its row (first_row + the row of src: src may be rows of a larger matrix) and column, raised before the call     \
       returns (the CUDA backend waits for the kernel). */                                                             \
    X(void, quantize_q8, (int8_t* q, uint16_t* scales, const Weight& src, int64_t first_row))                                       \
    /* The Q4 planes of src (dense, cols a multiple of 256): nibbles [rows, cols / 2] and 16-byte super-block headers  \
       [rows, cols / 256] (quantize_q4 per row), with quantize_q8's errors and their timing. */                        \
    X(void, quantize_q4, (uint8_t* nib, uint8_t* headers, const Weight& src, int64_t first_row))

class WeightOps {
public:
    QWEN3VL_WEIGHT_OPS(QWEN3VL_PURE_OP)

protected:
    ~WeightOps() = default;
};

// The declarations of every op in a backend class: `QWEN3VL_OPS_OVERRIDES` in its public section.
#define QWEN3VL_OPS_OVERRIDES \
    QWEN3VL_ELEMENTWISE_OPS(QWEN3VL_OVERRIDE_OP) \
    QWEN3VL_NORM_OPS(QWEN3VL_OVERRIDE_OP) \
    QWEN3VL_LINEAR_OPS(QWEN3VL_OVERRIDE_OP) \
    QWEN3VL_ROPE_OPS(QWEN3VL_OVERRIDE_OP) \
    QWEN3VL_ATTENTION_OPS(QWEN3VL_OVERRIDE_OP) \
    QWEN3VL_EMBEDDING_OPS(QWEN3VL_OVERRIDE_OP) \
    QWEN3VL_REDUCE_OPS(QWEN3VL_OVERRIDE_OP) \
    QWEN3VL_WEIGHT_OPS(QWEN3VL_OVERRIDE_OP)

}  // namespace qwen3vl
