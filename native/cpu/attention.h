// Attention with online (flash-style) softmax, f32 accumulation, scale 1/sqrt(D).
//
// Work is split into tasks of (KV head, block of query tokens): the G = Hq / Hkv query heads sharing a KV head and
// the block's tokens form up to ~32 query rows that walk the keys in tiles of 64; each K/V tile is packed into
// contiguous f32 scratch (converting f16 / bf16 caches, dequantizing Q8 ones) once per task and read from there by every query row -
// GQA without repeating K/V, and no strided cache reads in the inner loops.
// Per query row the running max m, sum l and output accumulator are rescaled by exp(m_old - m_new) per tile
// (softmax(QK^T * scale) V in one pass, never materialising the score matrix).
//
// CAUSAL: query token t sits at cache position n_past + t and sees keys 0 .. n_past + t.
// SEGMENTS: a query of segment s sees the keys of segment s (vision: one image per segment), bidirectionally.
#pragma once

#include <cstdint>

#include "cpu_features.h"
#include "op_params.h"
#include "qwen3vl.h"
#include "thread_pool.h"

namespace qwen3vl {
namespace cpu {

using qwen3vl::AttentionArgs;  // native/core/op_params.h

void attention(ThreadPool& pool, const AttentionArgs& a, CpuKernels k = cpu_kernels());

// One query row against n keys of a tile (f32, row strides ldk / ldv): scores, then the online-softmax update of
// (m, l, acc[D]). scores has room for n rounded up to 8.
void attention_tile_scalar(const float* q, const float* K, int64_t ldk, const float* V, int64_t ldv, int64_t n,
                           int64_t D, float scale, float* scores, float& m, float& l, float* acc);
// n elements of a f32 / f16 / bf16 cache row as f32 (the K/V tile load of a 16-bit cache).
void attention_load_row_scalar(float* dst, const void* src, qwen3vl_dtype t, int64_t n);
void attention_load_row_avx2(float* dst, const void* src, qwen3vl_dtype t, int64_t n);
// n elements (whole blocks of 32) of a Q8 cache row as f32: f16(d[i / 32]) * q[i], exact.
void attention_load_row_q8_scalar(float* dst, const int8_t* q, const uint16_t* d, int64_t n);
void attention_load_row_q8_avx2(float* dst, const int8_t* q, const uint16_t* d, int64_t n);
void attention_tile_avx2(const float* q, const float* K, int64_t ldk, const float* V, int64_t ldv, int64_t n,
                         int64_t D, float scale, float* scores, float& m, float& l, float* acc);

}  // namespace cpu
}  // namespace qwen3vl
