// The CPU backend's ops (core/ops.h): the kernels of this folder on the backend's thread pool. The fused ops run as
// the composition of the unfused kernels in the order the op sequence would, with intermediates from the backend's
// pool, so their results are bitwise that sequence's. What the tensors hold (ids, rows, segment offsets, n_past read
// from memory) is checked here, in host memory, before any kernel runs (core/op_checks.h).
#include <algorithm>
#include <vector>

#include "attention.h"
#include "convert.h"
#include "cpu_backend.h"
#include "dtype.h"
#include "elementwise.h"
#include "embedding.h"
#include "gemm.h"
#include "norm.h"
#include "op_checks.h"
#include "quant.h"
#include "quant_cpu.h"
#include "cpu_features.h"
#include "reduce.h"
#include "rope.h"

namespace qwen3vl {
namespace {

// f32 scratch from the pool for the intermediate of a composed op (uninitialised, reused by later calls of the same
// size).
class Scratch {
public:
    Scratch(MemoryPool& pool, int64_t floats)
        : pool_(pool), p_(floats > 0 ? pool.allocate(size_t(floats) * sizeof(float)) : nullptr) {}
    ~Scratch() {
        if (p_) pool_.deallocate(p_);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    float* data() const { return static_cast<float*>(p_); }

private:
    MemoryPool& pool_;
    void* p_;
};

}  // namespace

// ---- ElementwiseOps

void CpuBackend::add(float* out, const float* a, const float* b, int64_t n) { cpu::add(threads_, out, a, b, n); }

void CpuBackend::swiglu(float* out, const float* gate, const float* up, int64_t n) {
    cpu::swiglu(threads_, out, gate, up, n);
}

void CpuBackend::gelu(float* out, const float* x, int64_t n, bool tanh_approximation) {
    cpu::gelu(threads_, out, x, n, tanh_approximation);
}

// ---- NormOps

void CpuBackend::rms_norm(float* out, const float* x, const Weight& w, int64_t rows, int64_t n, float eps) {
    cpu::rms_norm(threads_, out, x, w.data, w.dtype, rows, n, eps);
}

void CpuBackend::add_rms_norm(float* residual, float* out, const float* x, const Weight& w, int64_t rows, int64_t n,
                              float eps) {
    cpu::add_rms_norm(threads_, residual, out, x, w.data, w.dtype, rows, n, eps);
}

void CpuBackend::layer_norm(float* out, const float* x, const Weight& w, const Weight& b, int64_t rows, int64_t n,
                            float eps) {
    cpu::layer_norm(threads_, out, x, w.data, w.dtype, b.data, b.dtype, rows, n, eps);
}

// ---- LinearOps

void CpuBackend::linear(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,
                        const Weight& bias) {
    cpu::linear(threads_, out, x, M, K, N, w, bias);
}

void CpuBackend::norm_linear(const Projection* proj, int count, const float* x, int64_t M, int64_t K,
                             const Weight& norm, float eps) {
    Scratch y(pool_, norm.present() ? M * K : 0);
    if (norm.present()) cpu::rms_norm(threads_, y.data(), x, norm.data, norm.dtype, M, K, eps);
    const float* in = norm.present() ? y.data() : x;
    for (int i = 0; i < count; ++i) cpu::linear(threads_, proj[i].out, in, M, K, proj[i].n, proj[i].w, Weight{});
}

void CpuBackend::norm_linear_swiglu(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& norm,
                                    float eps, const Weight& gate, const Weight& up) {
    Scratch y(pool_, norm.present() ? M * K : 0);
    if (norm.present()) cpu::rms_norm(threads_, y.data(), x, norm.data, norm.dtype, M, K, eps);
    cpu::linear_swiglu(threads_, out, norm.present() ? y.data() : x, M, K, N, gate, up);
}

void CpuBackend::linear_residual(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,
                                 const Weight& bias, const float* residual) {
    Scratch t(pool_, M * N);
    cpu::linear(threads_, t.data(), x, M, K, N, w, bias);
    cpu::add(threads_, out, residual, t.data(), M * N);
}

void CpuBackend::linear_gelu(float* out, const float* x, int64_t M, int64_t K, int64_t N, const Weight& w,
                             const Weight& bias, bool tanh_approximation) {
    cpu::linear(threads_, out, x, M, K, N, w, bias);
    cpu::gelu(threads_, out, out, M * N, tanh_approximation);
}

void CpuBackend::layer_norm_linear(float* out, const float* x, int64_t M, int64_t K, int64_t N,
                                   const Weight& norm_weight, const Weight& norm_bias, float eps, const Weight& w,
                                   const Weight& bias) {
    Scratch y(pool_, M * K);
    cpu::layer_norm(threads_, y.data(), x, norm_weight.data, norm_weight.dtype, norm_bias.data, norm_bias.dtype, M, K,
                    eps);
    cpu::linear(threads_, out, y.data(), M, K, N, w, bias);
}

void CpuBackend::mlp_gelu(float* out, const float* x, int64_t M, int64_t K, const MlpGelu& mlp,
                          const float* residual) {
    const bool norm = mlp.norm_weight.present();
    Scratch y(pool_, norm ? M * K : 0);
    if (norm)
        cpu::layer_norm(threads_, y.data(), x, mlp.norm_weight.data, mlp.norm_weight.dtype, mlp.norm_bias.data,
                        mlp.norm_bias.dtype, M, K, mlp.eps);
    Scratch h(pool_, M * mlp.I);
    cpu::linear(threads_, h.data(), norm ? y.data() : x, M, K, mlp.I, mlp.fc1, mlp.fc1_bias);
    cpu::gelu(threads_, h.data(), h.data(), M * mlp.I, mlp.tanh_approximation);
    // x is consumed: out (which may be x) is written only now.
    Scratch t(pool_, residual ? M * mlp.N : 0);
    float* o2 = residual ? t.data() : out;
    cpu::linear(threads_, o2, h.data(), M, mlp.I, mlp.N, mlp.fc2, mlp.fc2_bias);
    if (residual) cpu::add(threads_, out, residual, o2, M * mlp.N);
}

// ---- RopeOps

void CpuBackend::qk_norm_rope_kv(const QkNormRopeKv& a) {
    QkNormRopeKv r = a;
    r.n_past = read_n_past(a.n_past, a.n_past_device);
    r.n_past_device = nullptr;
    cpu::qk_norm_rope_kv(threads_, r);
}

void CpuBackend::rope_vision(float* qkv, int64_t tokens, int64_t heads, int64_t head_dim, const int32_t* positions,
                             float theta) {
    cpu::rope_vision(threads_, qkv, tokens, heads, head_dim, positions, theta);
}

// ---- AttentionOps

void CpuBackend::attention(const AttentionArgs& a) {
    AttentionArgs r = a;
    if (a.causal) {
        r.n_past = read_n_past(a.n_past, a.n_past_device);
        r.n_past_device = nullptr;
    } else {
        check_segments(a.segments, a.n_segments, a.tokens);
    }
    cpu::attention(threads_, r);
}

void CpuBackend::qk_norm_rope_attention(const QkNormRopeKv& rope, const AttentionArgs& a) {
    QkNormRopeKv r = rope;
    r.n_past = read_n_past(rope.n_past, rope.n_past_device);
    r.n_past_device = nullptr;
    AttentionArgs at = a;
    at.n_past = r.n_past;
    at.n_past_device = nullptr;
    cpu::qk_norm_rope_kv(threads_, r);
    cpu::attention(threads_, at);
}

// ---- EmbeddingOps

void CpuBackend::embedding(float* out, const Weight& table, const int32_t* ids, int64_t tokens) {
    check_ids(ids, tokens, table.rows);
    cpu::embedding(threads_, out, table.data, table.dtype, table.scales, ids, tokens, table.cols);
}

void CpuBackend::scatter_rows(float* x, int64_t x_rows, const int32_t* rows, const float* src, int64_t count,
                              int64_t width, bool accumulate) {
    check_scatter_rows(rows, count, x_rows);
    cpu::scatter_rows(threads_, x, rows, src, count, width, accumulate);
}

void CpuBackend::position_embedding(float* out, const Weight& table, int64_t side, int64_t grid_h,
                                    int64_t grid_w, int64_t merge) {
    cpu::position_embedding(threads_, out, table.data, table.dtype, side, table.cols, grid_h, grid_w, merge);
}

// ---- WeightOps

namespace {

// Each row r of the dense src widened to f32 and handed to quantize(row, r) on the pool, tasks of at least
// min_weights weights (a row's quantization is independent of the others').
template <class F>
void for_each_f32_row(ThreadPool& pool, const Weight& src, int64_t min_weights, F quantize) {
    const int64_t rows = src.rows, cols = src.cols;
    if (rows <= 0 || cols <= 0) return;
    const size_t es = dtype_size(src.dtype);
    const int64_t chunk = std::max<int64_t>(1, min_weights / cols);
    pool.parallel_for(size_t((rows + chunk - 1) / chunk), [&](size_t task, int) {
        thread_local std::vector<float> row;
        row.resize(size_t(cols));
        const int64_t r0 = int64_t(task) * chunk, r1 = std::min(rows, r0 + chunk);
        for (int64_t r = r0; r < r1; ++r) {
            cpu::convert(row.data(), QWEN3VL_DTYPE_F32, static_cast<const uint8_t*>(src.data) + size_t(r * cols) * es,
                         src.dtype, size_t(cols));
            quantize(row.data(), r);
        }
    });
}

}  // namespace

void CpuBackend::quantize_q8(int8_t* q, uint16_t* scales, const Weight& src, int64_t first_row) {
    const int64_t cols = src.cols;
    const bool avx2 = cpu_kernels() == CpuKernels::Avx2;
    for_each_f32_row(threads_, src, int64_t(1) << 16, [&](const float* row, int64_t r) {
        int8_t* qr = q + r * cols;
        uint16_t* dr = scales + r * (cols / kQ8Block);
        if (!(avx2 && cpu::quantize_q8_row_avx2(row, cols, qr, dr))) qwen3vl::quantize_q8_row(row, cols, first_row + r, qr, dr);
    });
}

void CpuBackend::quantize_q4(uint8_t* nib, uint8_t* headers, const Weight& src, int64_t first_row) {
    const int64_t cols = src.cols;
    const bool avx2 = cpu_kernels() == CpuKernels::Avx2;
    for_each_f32_row(threads_, src, int64_t(1) << 14, [&](const float* row, int64_t r) {
        uint8_t* nr = nib + r * (cols / 2);
        uint8_t* hr = headers + r * (cols / kQ4Super) * kQ4HeaderBytes;
        if (!(avx2 && cpu::quantize_q4_row_avx2(row, cols, nr, hr))) qwen3vl::quantize_q4_row(row, cols, first_row + r, nr, hr);
    });
}

// ---- ReduceOps

void CpuBackend::softmax(float* out, const float* x, int64_t rows, int64_t n) { cpu::softmax(threads_, out, x, rows, n); }

void CpuBackend::argmax(int32_t* out, const float* x, int64_t rows, int64_t n) { cpu::argmax(threads_, out, x, rows, n); }

void CpuBackend::top_k(float* values, int32_t* indices, const float* x, int64_t rows, int64_t n, int64_t k) {
    cpu::top_k(threads_, values, indices, x, rows, n, k);
}

}  // namespace qwen3vl
