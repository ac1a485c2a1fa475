// Linear layers on device memory (host entry points in linear.cu; kernels in gemv.cu, cuBLASLt in gemm_lt.cu): out[M, N] = x[M, K] * W[N, K]^T
// (+ bias), out = silu(x Wg^T) * (x Wu^T), and the fused forms of the decoder layer: an RMSNorm of x before up to
// three projections of it (q/k/v) or before the gated MLP, and the residual add after a projection (o_proj,
// down_proj); and of the vision blocks: a LayerNorm before a projection (qkv), GELU after one, and the whole GELU
// MLP (LayerNorm, fc1, GELU, fc2, residual). x and out f32; W f32, f16, bf16, Q8 or Q4 (core/quant.h; all weights of
// a fused form of one dtype for its one-launch GEMV, as for the dense ones); bias and norm weights f32, f16 or bf16.
// Semantics as native/cpu/gemm.h composed with native/cpu/norm.h and elementwise.h.
//
// Two regimes, chosen by M:
//  - M <= kGemvMaxRows: memory-bound GEMV in fp32, weights streamed once for all rows of x, one kernel launch per
//    call (the RMSNorm, the projections of one input, swiglu, bias and residual all inside it).
//  - otherwise cuBLASLt. With bf16 weights on sm_80+ or f16 weights on sm_70+, x (after the norm) is rounded to
//    the weight dtype and the tensor cores multiply with fp32 accumulation and fp32 output (NMSE ~1e-6 against the
//    fp32 CPU path for bf16, ~1e-7 for f16: the rounding of x). Elsewhere (f32 weights, older GPUs, fp32_math) an
//    fp32 GEMM, with 16-bit weights widened to f32 in bounded chunks of rows. The residual is the GEMM's C operand
//    (beta = 1), bias and tanh GELU are cuBLASLt epilogues; a LayerNorm / RMSNorm before the GEMM writes its
//    16-bit input directly. Layouts and the heuristic's algorithm are cached per shape and epilogue.
//
// Q8 and Q4 weights. GEMV: x is quantized per block of 32 like Q8 weights (int8 and an f32 scale, in shared memory)
// and multiplied with dp4a, fp32 accumulation over the blocks (gemv.cu; Q4: per group of 32 the nibbles' int32 dot
// with x's int8 and the min through the block's sum of int8, q4_arith.h): besides f32 rounding, an output differs
// from the product with the dequantized weights by at most sum_b dx_b / 2 sum_{k in b} |w_k| (dx_b = max |x| / 127
// over block b of x), ~0.4% relative RMS. GEMM: blocks of rows dequantized into scratch and multiplied as bf16
// weights on tensor cores (the weight rounded to bf16: up to 2^-8 relative, on top of x's bf16 rounding), or as f32
// weights (exactly the host reference's) in the fp32 GEMM; a dedicated int8 tensor-core GEMM is a later step
// (linear.cu, gemm_blocks).
//
// Every entry point only launches work on be.stream() and takes scratch from the pool: safe under graph capture.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "op_params.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

// Weight, Projection and MlpGelu: native/core/op_params.h.

// Largest M that runs as GEMV. Above it the tensor-core GEMM wins: at M = 9 the GEMV would need 9 accumulators
// per weight row (registers), while a 2048 x 2048 bf16 GEMM at M = 16 is still weight-bound in cuBLASLt.
constexpr int64_t kGemvMaxRows = 8;

// out must not overlap x, w or bias; bias.data may be NULL.
void linear(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight bias);

// proj[i].out = y * proj[i].w^T for i < count (1..3), y = rms_norm(x) * norm (eps) when norm.data is not NULL,
// else x. Outputs must not overlap x, each other or any weight.
void norm_linear(CudaBackend& be, const Projection* proj, int count, const float* x, int64_t M, int64_t K,
                 Weight norm, float eps);
// out = silu(y gate^T) * (y up^T), y as in norm_linear (norm.data NULL: plain x, qwen3vl_op_linear_swiglu).
void norm_linear_swiglu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight norm,
                        float eps, Weight gate, Weight up);
// out = residual + (x w^T + bias); out may be residual, must not overlap x, w or bias.
void linear_residual(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w,
                     Weight bias, const float* residual);

// out = gelu(x w^T + bias), tanh or erf form; out must not overlap x, w or bias.
void linear_gelu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight bias,
                 bool tanh_approximation);
// out = y w^T + bias, y = layer_norm(x) * norm_weight + norm_bias (eps); out must not overlap x, w or the norm.
void layer_norm_linear(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N,
                       Weight norm_weight, Weight norm_bias, float eps, Weight w, Weight bias);

// The GELU MLP of the vision blocks and patch mergers (MlpGelu, op_params.h).
// With M > kGemvMaxRows and fc1, fc2 of one 16-bit dtype on tensor cores, the intermediate is kept in that dtype
// (the rounding fc2's GEMM applies to its input anyway). residual may be NULL or out; out may be x (x is consumed
// before out is written); out must not overlap the weights.
void mlp_gelu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, const MlpGelu& mlp,
              const float* residual);

}  // namespace cuda
}  // namespace qwen3vl
