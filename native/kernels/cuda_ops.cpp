// The CUDA backend's ops (core/ops.h): the host entry points of this folder's kernels. What the tensors hold is
// checked on the device, since a check on the host would wait for the GPU and could not be captured (token ids,
// scatter rows, segment offsets, n_past read at run time): a bad value raises the device error flag, reported by the
// next download.
#include <string>

#include "attention.cuh"
#include "cuda_backend.h"
#include "dtype.h"
#include "elementwise.cuh"
#include "embedding.cuh"
#include "linear.cuh"
#include "norm.cuh"
#include "quant.cuh"
#include "reduce.cuh"
#include "rope.cuh"
#include "segments.cuh"
#include "topk.cuh"

namespace qwen3vl {
namespace {

// The weight formats this backend has kernels for: the dense ones everywhere, and the block formats (blocks = true)
// Q8 (int8 blocks of 32 along a row, f16 scales) and Q4 (super-blocks of 256 along a row, 16-byte headers; both
// core/quant.h, as weight_of describes them) for projections (linear.cuh: every linear op) and embedding tables.
// Anything else is refused by name (UNSUPPORTED); the C API lets block formats into those arguments only
// (OpArgs::matrix).
void require_kernel(const Weight& w, const char* what, bool blocks) {
    if (!w.present() || w.dense()) return;
    const bool row_blocks = w.scales && w.scale_dtype == QWEN3VL_DTYPE_F16 && w.block_rows == 1 && !w.zeros;
    if (blocks && row_blocks && w.dtype == QWEN3VL_DTYPE_Q8 && w.block_cols == 32) return;
    if (blocks && row_blocks && w.dtype == QWEN3VL_DTYPE_Q4 && w.block_cols == 256 && w.cols % 256 == 0) return;
    fail(QWEN3VL_STATUS_UNSUPPORTED, std::string("the CUDA backend has no kernel for ") + dtype_name(w.dtype) + " " +
                                         what + " (use the CPU backend, or bf16 weights)");
}
void require_projection(const Weight& w) { require_kernel(w, "weights", true); }

}  // namespace

// ---- ElementwiseOps

void CudaBackend::add(float* out, const float* a, const float* b, int64_t n) { cuda::add(*this, out, a, b, n); }

void CudaBackend::swiglu(float* out, const float* gate, const float* up, int64_t n) {
    cuda::swiglu(*this, out, gate, up, n);
}

void CudaBackend::gelu(float* out, const float* x, int64_t n, bool tanh_approximation) {
    cuda::gelu(*this, out, x, n, tanh_approximation);
}

// ---- NormOps

void CudaBackend::rms_norm(float* out, const float* x, const Weight& w, int64_t rows, int64_t n, float eps) {
    cuda::rms_norm(*this, out, x, w.data, w.dtype, rows, n, eps);
}

void CudaBackend::add_rms_norm(float* residual, float* out, const float* x, const Weight& w, int64_t rows, int64_t n,
                               float eps) {
    cuda::add_rms_norm(*this, residual, out, x, w.data, w.dtype, rows, n, eps);
}

void CudaBackend::layer_norm(float* out, const float* x, const Weight& w, const Weight& b, int64_t rows, int64_t n,
                             float eps) {
    cuda::layer_norm(*this, out, x, w.data, w.dtype, b.data, b.dtype, rows, n, eps);
}

// ---- LinearOps

void CudaBackend::linear(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,
                         const Weight& bias) {
    require_projection(w);
    cuda::linear(*this, out, x, M, K, N, w, bias);
}

void CudaBackend::norm_linear(const Projection* proj, int count, const float* x, int64_t M, int64_t K,
                              const Weight& norm, float eps) {
    for (int i = 0; i < count; ++i) require_projection(proj[i].w);
    cuda::norm_linear(*this, proj, count, x, M, K, norm, eps);
}

void CudaBackend::norm_linear_swiglu(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& norm,
                                     float eps, const Weight& gate, const Weight& up) {
    require_projection(gate);
    require_projection(up);
    cuda::norm_linear_swiglu(*this, out, x, M, K, N, norm, eps, gate, up);
}

void CudaBackend::linear_residual(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,
                                  const Weight& bias, const float* residual) {
    require_projection(w);
    cuda::linear_residual(*this, out, x, M, K, N, w, bias, residual);
}

void CudaBackend::linear_gelu(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,
                              const Weight& bias, bool tanh_approximation) {
    require_projection(w);
    cuda::linear_gelu(*this, out, x, M, K, N, w, bias, tanh_approximation);
}

void CudaBackend::layer_norm_linear(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                                    const Weight& norm_weight, const Weight& norm_bias, float eps, const Weight& w,
                                    const Weight& bias) {
    require_projection(w);
    cuda::layer_norm_linear(*this, out, x, M, K, N, norm_weight, norm_bias, eps, w, bias);
}

void CudaBackend::mlp_gelu(float* out, const float* x, int64_t M, int64_t K, const MlpGelu& mlp,
                           const float* residual) {
    require_projection(mlp.fc1);
    require_projection(mlp.fc2);
    cuda::mlp_gelu(*this, out, x, M, K, mlp, residual);
}

// ---- RopeOps

void CudaBackend::qk_norm_rope_kv(const QkNormRopeKv& a) {
    QkNormRopeKv r = a;
    r.error_flag = device_error_flag();
    cuda::qk_norm_rope_kv(*this, r);
}

void CudaBackend::rope_vision(float* qkv, int64_t tokens, int64_t heads, int64_t head_dim, const int32_t* positions,
                              float theta) {
    cuda::rope_vision(*this, qkv, tokens, heads, head_dim, positions, theta);
}

// ---- AttentionOps

void CudaBackend::attention(const AttentionArgs& a) {
    if (a.causal) return cuda::attention(*this, a);
    // The offsets are checked on the device (a bad set raises the error flag and attends nothing), not read back.
    AttentionArgs sane_args = a;
    Scratch sane(*this, size_t(a.n_segments + 1) * sizeof(int32_t));
    cuda::sanitize_segments(*this, sane.as<int32_t>(), a.segments, a.n_segments, a.tokens);
    sane_args.segments = sane.as<int32_t>();
    cuda::attention(*this, sane_args);
}

void CudaBackend::qk_norm_rope_attention(const QkNormRopeKv& rope, const AttentionArgs& a) {
    QkNormRopeKv r = rope;
    r.error_flag = device_error_flag();
    cuda::qk_norm_rope_attention(*this, r, a);
}

// ---- EmbeddingOps

void CudaBackend::embedding(float* out, const Weight& table, const int32_t* ids, int64_t tokens) {
    require_kernel(table, "embedding tables", true);
    cuda::embedding(*this, out, table.data, table.dtype, table.scales, table.rows, ids, tokens, table.cols);
}

void CudaBackend::scatter_rows(float* x, int64_t x_rows, const int32_t* rows, const float* src, int64_t count,
                               int64_t width, bool accumulate) {
    cuda::scatter_rows(*this, x, x_rows, rows, src, count, width, accumulate);
}

void CudaBackend::position_embedding(float* out, const Weight& table, int64_t side, int64_t grid_h,
                                     int64_t grid_w, int64_t merge) {
    require_kernel(table, "position embedding tables", false);
    cuda::position_embedding(*this, out, table.data, table.dtype, side, table.cols, grid_h, grid_w, merge);
}

// ---- WeightOps

void CudaBackend::quantize_q8(int8_t* q, uint16_t* scales, const Weight& src, int64_t first_row) {
    cuda::quantize_q8(*this, q, scales, src, first_row);
}
void CudaBackend::quantize_q4(uint8_t* nib, uint8_t* headers, const Weight& src, int64_t first_row) {
    cuda::quantize_q4(*this, nib, headers, src, first_row);
}

// ---- ReduceOps

void CudaBackend::softmax(float* out, const float* x, int64_t rows, int64_t n) { cuda::softmax(*this, out, x, rows, n); }

void CudaBackend::argmax(int32_t* out, const float* x, int64_t rows, int64_t n) { cuda::argmax(*this, out, x, rows, n); }

void CudaBackend::top_k(float* values, int32_t* indices, const float* x, int64_t rows, int64_t n, int64_t k) {
    cuda::top_k(*this, values, indices, x, rows, n, k);
}

}  // namespace qwen3vl
