// Rotary position embeddings in f32, as transformers computes them: inv_freq in f32 from theta, angles
// position * inv_freq rounded to f32, cos / sin of those angles, and rotate-half (pairs i and i + half).
// Text: interleaved M-RoPE fused with the q/k RMSNorm and the KV-cache write (one pass over q, k, v per token).
// Vision: 2D rotary on the q and k parts of the fused qkv.
#pragma once

#include <cstdint>

#include "cpu_features.h"
#include "op_params.h"
#include "qwen3vl.h"
#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

// inv_freq[i] = 1 / theta^(2i / dim) for i < dim / 2, each step rounded to f32 as in
// 1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim)).
void rope_inv_freq(float* inv_freq, int64_t dim, float theta);
// Angles of one token for interleaved M-RoPE (apply_interleaved_mrope): slot i < half takes the t stream, except
// slots 1, 4, 7, ... below 3 * section[1] (h stream) and 2, 5, 8, ... below 3 * section[2] (w stream).
void mrope_angles(float* angles, const float* inv_freq, int64_t half, const int32_t pos_t, int32_t pos_h,
                  int32_t pos_w, const int64_t* section);
// x[i], x[i + half] rotated by angles[i] (cos and sin given), i < half: x * cos + rotate_half(x) * sin.
void rotate_half_apply(float* x, const float* cos, const float* sin, int64_t half);

using qwen3vl::QkNormRopeKv;  // native/core/op_params.h
void qk_norm_rope_kv(ThreadPool& pool, const QkNormRopeKv& a, CpuKernels k = cpu_kernels());

// In place on qkv [T, 3, H, D] (q and k parts): angle j < D/4 is row * f_j, D/4 <= j < D/2 is col * f_(j - D/4),
// f = rope_inv_freq(D / 2, theta). positions: [T, 2] (row, col).
void rope_vision(ThreadPool& pool, float* qkv, int64_t tokens, int64_t heads, int64_t head_dim,
                 const int32_t* positions, float theta);

}  // namespace cpu
}  // namespace qwen3vl
