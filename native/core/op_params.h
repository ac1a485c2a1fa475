// Argument structs of the ops whose CPU (native/cpu) and CUDA (native/kernels) implementations take the same
// parameters; pointers are host memory for the CPU backend and device memory for CUDA.
#pragma once

#include <cstdint>

#include "qwen3vl.h"

namespace qwen3vl {

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
    int64_t n_past;           // CAUSAL: keys before the first query (see n_past_device)
    // CAUSAL on a device, for captured graphs: when not null, the kernels read n_past from this i32 when they run,
    // clamped to 0 .. n_past; the host-side n_past then holds the largest value it may take (cache rows - T), which
    // sizes the launch. Null on the CPU.
    const int32_t* n_past_device = nullptr;
    const int32_t* segments;  // SEGMENTS: n_segments + 1 cumulative offsets from 0 to T
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
    // As AttentionArgs::n_past_device: read at run time; a value outside 0 .. n_past writes no cache row and raises
    // the backend's device error flag (reported by the next read).
    const int32_t* n_past_device = nullptr;
    int32_t* error_flag = nullptr;
};

}  // namespace qwen3vl
