// Argument structs of the backend ops (core/ops.h) with many parameters; pointers are host memory for the CPU backend
// and device memory for CUDA.
#pragma once

#include <cstdint>

#include "qwen3vl.h"
#include "weight.h"

namespace qwen3vl {

// One projection of a shared input (LinearOps::norm_linear): out [M, n] = y * w^T, w [n, K].
struct Projection {
    float* out = nullptr;
    Weight w;
    int64_t n = 0;
};

// The GELU MLP of the vision blocks and patch mergers (LinearOps::mlp_gelu): out[M, N] = (residual +)
// gelu(y fc1^T + fc1_bias) fc2^T + fc2_bias, y = layer_norm(x) * norm_weight + norm_bias (eps) when norm_weight is
// present, else x [M, K].
struct MlpGelu {
    Weight norm_weight, norm_bias;
    float eps = 0.0f;
    Weight fc1, fc1_bias;  // [I, K], [I]
    bool tanh_approximation = false;
    Weight fc2, fc2_bias;  // [N, I], [N]
    int64_t I = 0, N = 0;
};

struct AttentionArgs {
    float* out;      // [T, Hq, D]
    const float* q;  // query of token t, head h at q + t * q_stride + h * D
    int64_t q_stride;
    const void* k;   // key j of KV head g at k + j * kv_stride + g * D (elements of kv_dtype); v likewise
    const void* v;
    qwen3vl_dtype kv_dtype;
    int64_t kv_stride;
    // kv_dtype Q8 (a KV cache in blocks of 32 along D, D and kv_stride multiples of 32): the f16 scale of the element
    // at offset e from k (v) is k_scales[e / 32] (v_scales[e / 32]); k and v hold the int8 values. Null otherwise.
    const uint16_t* k_scales = nullptr;
    const uint16_t* v_scales = nullptr;
    int64_t tokens, q_heads, kv_heads, head_dim;
    bool causal;
    int64_t n_past;           // CAUSAL: keys before the first query (see n_past_device)
    // When not null (qwen3vl_op_attention's n_past_tensor, for captured graphs), n_past is read from this i32 when
    // the op runs and n_past holds the largest value it may take (its bound), which sizes a GPU launch. The CPU
    // backend reads the value and refuses one outside 0 .. n_past; the CUDA kernels clamp it to that range.
    const int32_t* n_past_device = nullptr;
    // SEGMENTS: n_segments + 1 cumulative offsets from 0 to T, as the caller gave them: the backend checks them (the
    // CPU refuses bad ones; CUDA sanitises them on the device, so a check never waits for the GPU).
    const int32_t* segments;
    int64_t n_segments;
};

// The text attention prologue: per token, RMSNorm of every q and k head, interleaved M-RoPE, then k and v written
// to cache rows n_past + t.
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
    const int32_t* positions;  // [3, T]
    float theta;
    int64_t section[3];        // mrope_section
    void* k_cache;             // [capacity, Hkv, D]
    void* v_cache;
    qwen3vl_dtype cache_dtype;
    int64_t n_past;
    // As AttentionArgs::n_past_device: read at run time. On CUDA a value outside 0 .. n_past writes no cache row and
    // raises the backend's device error flag (reported by the next read); the CPU refuses it.
    const int32_t* n_past_device = nullptr;
    int32_t* error_flag = nullptr;  // set by the CUDA backend (CudaBackend::device_error_flag), not by callers
    // cache_dtype Q8: the caches' f16 scale planes (as AttentionArgs::k_scales); each block of 32 of a new head row
    // quantized with kv_q8 (core/quant.h). Null otherwise.
    uint16_t* k_cache_scales = nullptr;
    uint16_t* v_cache_scales = nullptr;
};

}  // namespace qwen3vl
