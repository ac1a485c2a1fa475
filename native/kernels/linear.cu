// The linear ops on the GPU (linear.cuh: the regimes), composed of the GEMV (gemv.cuh) for decode-sized M and the
// cuBLASLt products (gemm_lt.cuh) for the rest, and the fused prologues and epilogues around them.
//
// Epilogues: cuBLASLt applies the bias, the tanh GELU (its GELU is the tanh approximation, gelu_pytorch_tanh) and the
// residual (C = residual with beta = 1; C may be D) while it writes D, so a projection with any of them is one
// kernel; the erf GELU stays a pass of its own. Its bias must have D's type (cuBLASLt's rule: f32 for the usual f32
// output), so a bias of another dtype is first converted (N elements, not M x N). The vision MLP keeps its
// intermediate gelu(fc1) in fc2's 16-bit weight dtype, written so by fc1's epilogue and read as it is by fc2's GEMM
// (the same rounding the GEMM applied to an f32 input, without the f32 round trip and the conversion pass).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "common.cuh"
#include "convert.cuh"
#include "dtype.h"
#include "elementwise.cuh"
#include "gemm_lt.cuh"
#include "gemv.cuh"
#include "linear.cuh"
#include "norm.cuh"
#include "quant.cuh"
#include "quant.h"

namespace qwen3vl {
namespace cuda {
namespace {

// Largest f32 copy of a weight block made for the fp32 GEMM of 16-bit weights.
constexpr size_t kWidenBytes = size_t(64) << 20;

// ---- Epilogue kernels: what follows a product when cuBLASLt's epilogue does not do it (an empty K, the erf GELU,
// no algorithm for the fused form).

// out = (residual or 0) + (bias or 0): the product of an empty K.
// Per-column epilogues over [M, N]: threads across the columns (blockIdx.x), rows by blockIdx.y, so each thread loads
// its bias element once and no element index is divided (a 64-bit i % N per element made the vision encoder's bias
// adds take ~4 ms of a 1024x1024 image).
__global__ void fill_kernel(float* out, int64_t M, int64_t N, const float* residual, const void* bias,
                            qwen3vl_dtype bt) {
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < N; c += int64_t(gridDim.x) * blockDim.x) {
        const float b = bias ? load_f32(bias, bt, size_t(c)) : 0.0f;
        for (int64_t r = blockIdx.y; r < M; r += gridDim.y) out[r * N + c] = (residual ? residual[r * N + c] : 0.0f) + b;
    }
}

__global__ void add_bias_kernel(float* out, int64_t M, int64_t N, const void* bias, qwen3vl_dtype bt) {
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < N; c += int64_t(gridDim.x) * blockDim.x) {
        const float b = load_f32(bias, bt, size_t(c));
        for (int64_t r = blockIdx.y; r < M; r += gridDim.y) out[r * N + c] += b;
    }
}

dim3 column_grid(int64_t M, int64_t N, unsigned block) {
    const int64_t x = std::min<int64_t>((N + block - 1) / block, 1024);
    const int64_t y = std::min<int64_t>(M, std::max<int64_t>(1, 8192 / x));
    return dim3(unsigned(std::max<int64_t>(x, 1)), unsigned(std::max<int64_t>(y, 1)));
}

// What follows the product x W^T of a projection: + bias[N] (f32, f16 or bf16; data NULL: none), then GELU.
enum class Gelu { kNone, kTanh, kErf };
struct Epilogue {
    Weight bias;
    Gelu gelu = Gelu::kNone;
};

// The epilogue as separate passes over out [M, N] (f32, contiguous).
void epilogue_kernels(CudaBackend& be, float* out, int64_t M, int64_t N, const Epilogue& e) {
    if (e.bias.data) {
        add_bias_kernel<<<column_grid(M, N, 256), 256, 0, be.stream()>>>(out, M, N, e.bias.data, e.bias.dtype);
        QWEN3VL_CUDA_CHECK_LAUNCH();
    }
    if (e.gelu != Gelu::kNone) gelu(be, out, out, M * N, e.gelu == Gelu::kTanh);
}

// The norm of a projection's input rows: none (weight.data NULL), RMSNorm (weight) or LayerNorm (weight and bias).
struct RowNorm {
    Weight weight;
    Weight bias;
    float eps = 0.0f;
    bool layer = false;
};

// x as the projections take it: the f32 rows (normalised into scratch on first use when there is a norm) and a copy
// rounded to a 16-bit weight dtype for the tensor cores, made once on first use (with a norm straight from x by the
// norm kernel, which saves both the f32 pass and the conversion). Or rows that are 16-bit already (the MLP's
// intermediate, written so by a GEMM's epilogue): rounded() hands them out as they are, f32() widens them.
class GemmInput {
public:
    GemmInput(CudaBackend& be, const float* x, int64_t M, int64_t K, RowNorm norm = RowNorm{})
        : be_(be), x_(x), M_(M), K_(K), norm_(norm) {}
    GemmInput(CudaBackend& be, const void* x16, qwen3vl_dtype dtype, int64_t M, int64_t K)
        : be_(be), M_(M), K_(K), x16_(x16), x16_dtype_(dtype) {}

    const float* f32() {
        if (!norm_.weight.data && !x16_) return x_;
        if (!y32_) {
            y32_ = std::make_unique<CudaBackend::Scratch>(be_, size_t(M_ * K_) * sizeof(float));
            if (x16_) convert(y32_->as<void>(), QWEN3VL_DTYPE_F32, x16_, x16_dtype_, size_t(M_ * K_), be_.stream());
            else normalise(y32_->as<void>(), QWEN3VL_DTYPE_F32);
        }
        return y32_->as<float>();
    }

    const void* rounded(qwen3vl_dtype dt) {
        if (x16_ && x16_dtype_ == dt) return x16_;
        if (y16_ && y16_dtype_ == dt) return y16_->as<void>();
        y16_ = std::make_unique<CudaBackend::Scratch>(be_, size_t(M_ * K_) * 2);
        y16_dtype_ = dt;
        if (norm_.weight.data && !y32_) normalise(y16_->as<void>(), dt);
        else convert(y16_->as<void>(), dt, f32(), QWEN3VL_DTYPE_F32, size_t(M_ * K_), be_.stream());
        return y16_->as<void>();
    }

private:
    void normalise(void* out, qwen3vl_dtype ot) {
        if (norm_.layer)
            layer_norm(be_, out, ot, x_, norm_.weight.data, norm_.weight.dtype, norm_.bias.data, norm_.bias.dtype, M_,
                       K_, norm_.eps);
        else
            rms_norm(be_, out, ot, x_, norm_.weight.data, norm_.weight.dtype, M_, K_, norm_.eps);
    }

    CudaBackend& be_;
    const float* x_ = nullptr;
    int64_t M_, K_;
    RowNorm norm_;
    const void* x16_ = nullptr;
    qwen3vl_dtype x16_dtype_ = QWEN3VL_DTYPE_F32;
    std::unique_ptr<CudaBackend::Scratch> y32_, y16_;
    qwen3vl_dtype y16_dtype_ = QWEN3VL_DTYPE_F32;
};

// The bias of cuBLASLt's epilogue: elements of the output's dtype dt, 16-byte aligned; bias itself when it is so,
// else a copy converted into `copy`.
const void* epilogue_bias(CudaBackend& be, std::unique_ptr<CudaBackend::Scratch>& copy, Weight bias, qwen3vl_dtype dt,
                          int64_t n) {
    if (!bias.data) return nullptr;
    if (bias.dtype == dt && reinterpret_cast<uintptr_t>(bias.data) % 16 == 0) return bias.data;
    copy = std::make_unique<CudaBackend::Scratch>(be, size_t(n) * dtype_size(dt));
    convert(copy->as<void>(), dt, bias.data, bias.dtype, size_t(n), be.stream());
    return copy->as<void>();
}

// An f32 product p followed by the epilogue e: bias and tanh GELU in cuBLASLt's epilogue where it has an algorithm
// for them (else the plain product and the epilogue kernels), the erf GELU always as a kernel. False when cuBLASLt
// has no algorithm even for the plain product.
bool lt_matmul_epilogue(CudaBackend& be, LtProduct p, const Epilogue& e) {
    const Epilogue after_erf{Weight{}, e.gelu == Gelu::kErf ? Gelu::kErf : Gelu::kNone};
    if (e.bias.data || e.gelu == Gelu::kTanh) {
        std::unique_ptr<CudaBackend::Scratch> copy;
        LtProduct fused = p;
        fused.bias = epilogue_bias(be, copy, e.bias, QWEN3VL_DTYPE_F32, p.n);
        fused.gelu = e.gelu == Gelu::kTanh;
        if (lt_matmul(be, fused)) {
            epilogue_kernels(be, static_cast<float*>(p.d), p.M, p.n, after_erf);
            return true;
        }
    }
    if (!lt_matmul(be, p)) return false;
    epilogue_kernels(be, static_cast<float*>(p.d), p.M, p.n, e);
    return true;
}

// Rows [n0, n0 + rows) of a block-format weight (Q8 or Q4, K columns) dequantized into out as ot (bf16 or f32): the
// values core/quant.h's dequantize_q8 / dequantize_q4 give, f32 exactly or rounded to nearest even into bf16.
void dequantize_rows(CudaBackend& be, void* out, qwen3vl_dtype ot, const Weight& w, int64_t K, int64_t n0,
                     int64_t rows) {
    const size_t n = size_t(rows * K);
    if (w.dtype == QWEN3VL_DTYPE_Q4)
        dequantize_q4(be, out, ot, static_cast<const uint8_t*>(w.data) + size_t(n0 * (K / 2)),
                      static_cast<const uint8_t*>(w.scales) + size_t(n0 * (K / kQ4Super) * kQ4HeaderBytes), n);
    else
        dequantize_q8(be, out, ot, static_cast<const int8_t*>(w.data) + size_t(n0 * K),
                      static_cast<const uint16_t*>(w.scales) + size_t(n0 * (K / kQ8Block)), n);
}

// Block-format weights (Q8, Q4) for M > kGemvMaxRows: blocks of weight rows dequantized into scratch (at most
// kWidenBytes, so one block for every decoder projection of the 2B and several for lm_head), each multiplied by
// cuBLASLt as a dense weight of that dtype: bf16 on tensor cores where bf16 weights would take them (x rounded to bf16
// as for bf16 weights; the weight rounded to bf16, a relative error of up to 2^-8 per weight), else f32 (the weights
// exactly as the host reference dequantizes them) and the fp32 GEMM. A single block has the epilogue fused like a
// dense weight; several run the epilogue after the last (the fused forms and the epilogue kernels address out as
// [M, n], a block's columns are [M, n] with leading dimension N). A block cuBLASLt has no bf16 algorithm for is
// redone in f32. The dequantization costs a pass over the weight (write 2 bytes per weight, read them back in the
// GEMM) next to the GEMM's own read; an int8 tensor-core GEMM (x quantized per block as the GEMV does, dp4a-equivalent
// IMMA with per-block scales) is the later step that removes it.
void gemm_blocks(CudaBackend& be, float* out, GemmInput& x, int64_t M, int64_t K, int64_t N, Weight w,
                 const float* residual, const Epilogue& e) {
    if (w.dtype == QWEN3VL_DTYPE_Q4 && K % kQ4Super != 0)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "q4 GEMM: K = " + std::to_string(K) + " is not whole super-blocks of 256");
    const bool tc = tensor_cores(be, QWEN3VL_DTYPE_BF16);
    const qwen3vl_dtype wt = tc ? QWEN3VL_DTYPE_BF16 : QWEN3VL_DTYPE_F32;
    const size_t esize = dtype_size(wt);
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, int64_t(kWidenBytes / (size_t(K) * esize))));
    const bool single = chunk >= N;
    CudaBackend::Scratch wd(be, size_t(chunk * K) * esize);
    std::unique_ptr<CudaBackend::Scratch> wf;  // f32 block for a product cuBLASLt has no bf16 algorithm for
    auto multiply = [&](LtProduct& block) { return single ? lt_matmul_epilogue(be, block, e) : lt_matmul(be, block); };
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t rows = std::min(chunk, N - n0);
        dequantize_rows(be, wd.as<void>(), wt, w, K, n0, rows);
        LtProduct block;
        block.d = out + n0;
        block.ldd = N;
        block.c = residual ? residual + n0 : nullptr;
        block.w = wd.as<void>();
        block.x = tc ? x.rounded(QWEN3VL_DTYPE_BF16) : x.f32();
        block.ab = cuda_type(wt);
        block.n = rows;
        block.M = M;
        block.K = K;
        bool done = multiply(block);
        if (!done && tc) {
            if (!wf) wf = std::make_unique<CudaBackend::Scratch>(be, size_t(chunk * K) * 4);
            dequantize_rows(be, wf->as<void>(), QWEN3VL_DTYPE_F32, w, K, n0, rows);
            block.w = wf->as<void>();
            block.x = x.f32();
            block.ab = CUDA_R_32F;
            done = multiply(block);
        }
        if (!done) fail(QWEN3VL_STATUS_DEVICE_ERROR, "qwen3vl_op_linear: cuBLASLt has no fp32 GEMM for this shape");
    }
    if (!single) epilogue_kernels(be, out, M, N, e);
}

// out[M, N] = x W^T (+ residual) then the epilogue e through cuBLASLt (M > kGemvMaxRows, K > 0).
void gemm(CudaBackend& be, float* out, GemmInput& x, int64_t M, int64_t K, int64_t N, Weight w,
          const float* residual, const Epilogue& e) {
    if (w.dtype == QWEN3VL_DTYPE_Q8 || w.dtype == QWEN3VL_DTYPE_Q4)
        return gemm_blocks(be, out, x, M, K, N, w, residual, e);
    LtProduct p;
    p.d = out;
    p.ldd = N;
    p.c = residual;
    p.w = w.data;
    p.n = N;
    p.M = M;
    p.K = K;
    if (tensor_cores(be, w.dtype)) {
        p.x = x.rounded(w.dtype);
        p.ab = cuda_type(w.dtype);
        if (lt_matmul_epilogue(be, p, e)) return;
    }
    if (w.dtype == QWEN3VL_DTYPE_F32) {
        p.x = x.f32();
        p.ab = CUDA_R_32F;
        if (!lt_matmul_epilogue(be, p, e))
            fail(QWEN3VL_STATUS_DEVICE_ERROR, "qwen3vl_op_linear: cuBLASLt has no fp32 GEMM for this shape");
        return;
    }
    // fp32 GEMM over f32 copies of blocks of weight rows (columns n0 .. n0 + rows of out), epilogue after.
    const size_t esize = 2;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, int64_t(kWidenBytes / (size_t(K) * 4))));
    CudaBackend::Scratch wf(be, size_t(chunk * K) * 4);
    p.x = x.f32();
    p.ab = CUDA_R_32F;
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t rows = std::min(chunk, N - n0);
        convert(wf.as<void>(), QWEN3VL_DTYPE_F32, static_cast<const char*>(w.data) + size_t(n0 * K) * esize, w.dtype,
                size_t(rows * K), be.stream());
        LtProduct block = p;
        block.d = out + n0;
        block.c = residual ? residual + n0 : nullptr;
        block.w = wf.as<void>();
        block.n = rows;
        if (!lt_matmul(be, block))
            fail(QWEN3VL_STATUS_DEVICE_ERROR, "qwen3vl_op_linear: cuBLASLt has no fp32 GEMM for this shape");
    }
    epilogue_kernels(be, out, M, N, e);
}

// out = (residual +) x W^T, then the epilogue e, for any M, x possibly normalised (GemmInput). A residual comes with
// no GELU (the GELU would apply to the sum).
void project(CudaBackend& be, float* out, GemmInput& x, int64_t M, int64_t K, int64_t N, Weight w, const Epilogue& e,
             const float* residual) {
    if (M <= kGemvMaxRows) {
        GemvJob job = gemv_job(x.f32(), M, K, Weight{}, 0.0f);
        job.proj[0] = Projection{out, w, N};
        job.bias = e.bias;
        job.residual = residual;
        gemv(be, job);
        epilogue_kernels(be, out, M, N, Epilogue{Weight{}, e.gelu});
        return;
    }
    if (K == 0) {
        fill_kernel<<<column_grid(M, N, 256), 256, 0, be.stream()>>>(out, M, N, residual, e.bias.data, e.bias.dtype);
        QWEN3VL_CUDA_CHECK_LAUNCH();
        epilogue_kernels(be, out, M, N, Epilogue{Weight{}, e.gelu});
        return;
    }
    gemm(be, out, x, M, K, N, w, residual, e);
}

// out = silu(y gate^T) * (y up^T): one GEMV launch when M is small and both weights share a dtype, else two
// projections and the elementwise swiglu.
void swiglu_projection(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight norm,
                       float eps, Weight gate, Weight up) {
    if (M <= kGemvMaxRows && gate.dtype == up.dtype) {
        GemvJob job = gemv_job(x, M, K, norm, eps);
        job.proj[0] = Projection{out, gate, N};
        job.up = up;
        gemv(be, job);
        return;
    }
    GemmInput y(be, x, M, K, RowNorm{norm, Weight{}, eps, false});
    CudaBackend::Scratch u(be, size_t(M * N) * sizeof(float));
    project(be, out, y, M, K, N, gate, Epilogue{}, nullptr);
    project(be, u.as<float>(), y, M, K, N, up, Epilogue{}, nullptr);
    swiglu(be, out, out, u.as<float>(), M * N);
}

// h [M, I] = gelu(y fc1^T + bias) in fc1's 16-bit dtype, which fc2's tensor-core GEMM reads as it is: one GEMM with the
// GELU_BIAS epilogue writing 16-bit (tanh form), or the GEMM with its bias into f32 scratch and the GELU kernel
// rounding as it stores (erf form). False when cuBLASLt has no algorithm for the 16-bit output (nothing queued).
bool gelu_intermediate(CudaBackend& be, void* h, GemmInput& y, int64_t M, int64_t K, int64_t I, Weight fc1,
                       Weight bias, Gelu g) {
    if (g == Gelu::kTanh) {
        std::unique_ptr<CudaBackend::Scratch> copy;
        LtProduct p;
        p.d = h;
        p.dt = cuda_type(fc1.dtype);
        p.ldd = I;
        p.w = fc1.data;
        p.x = y.rounded(fc1.dtype);
        p.ab = cuda_type(fc1.dtype);
        p.n = I;
        p.M = M;
        p.K = K;
        p.bias = epilogue_bias(be, copy, bias, fc1.dtype, I);
        p.gelu = true;
        return lt_matmul(be, p);
    }
    CudaBackend::Scratch f(be, size_t(M * I) * sizeof(float));
    gemm(be, f.as<float>(), y, M, K, I, fc1, nullptr, Epilogue{bias});
    gelu(be, h, fc1.dtype, f.as<float>(), M * I, false);
    return true;
}

}  // namespace

void linear(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight bias) {
    if (M <= 0 || N <= 0) return;
    be.activate();
    GemmInput y(be, x, M, K);
    project(be, out, y, M, K, N, w, Epilogue{bias}, nullptr);
}

void norm_linear(CudaBackend& be, const Projection* proj, int count, const float* x, int64_t M, int64_t K,
                 Weight norm, float eps) {
    if (M <= 0) return;
    be.activate();
    bool one_dtype = true;
    for (int i = 1; i < count; ++i) one_dtype = one_dtype && proj[i].w.dtype == proj[0].w.dtype;
    if (M <= kGemvMaxRows && one_dtype) {
        GemvJob job = gemv_job(x, M, K, norm, eps);
        job.count = 0;
        for (int i = 0; i < count; ++i)
            if (proj[i].n > 0) job.proj[job.count++] = proj[i];  // empty outputs are no segments
        if (job.count > 0) gemv(be, job);
        return;
    }
    GemmInput y(be, x, M, K, RowNorm{norm, Weight{}, eps, false});  // normalised once for all projections
    for (int i = 0; i < count; ++i)
        if (proj[i].n > 0) project(be, proj[i].out, y, M, K, proj[i].n, proj[i].w, Epilogue{}, nullptr);
}

void norm_linear_swiglu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight norm,
                        float eps, Weight gate, Weight up) {
    if (M <= 0 || N <= 0) return;
    be.activate();
    swiglu_projection(be, out, x, M, K, N, norm, eps, gate, up);
}

void linear_residual(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w,
                     Weight bias, const float* residual) {
    if (M <= 0 || N <= 0) return;
    be.activate();
    GemmInput y(be, x, M, K);
    project(be, out, y, M, K, N, w, Epilogue{bias}, residual);
}

void linear_gelu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight bias,
                 bool tanh_approximation) {
    if (M <= 0 || N <= 0) return;
    be.activate();
    GemmInput y(be, x, M, K);
    project(be, out, y, M, K, N, w, Epilogue{bias, tanh_approximation ? Gelu::kTanh : Gelu::kErf}, nullptr);
}

void layer_norm_linear(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N,
                       Weight norm_weight, Weight norm_bias, float eps, Weight w, Weight bias) {
    if (M <= 0 || N <= 0) return;
    be.activate();
    GemmInput y(be, x, M, K, RowNorm{norm_weight, norm_bias, eps, true});
    project(be, out, y, M, K, N, w, Epilogue{bias}, nullptr);
}

void mlp_gelu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, const MlpGelu& mlp,
              const float* residual) {
    if (M <= 0 || mlp.N <= 0) return;
    be.activate();
    GemmInput y(be, x, M, K, RowNorm{mlp.norm_weight, mlp.norm_bias, mlp.eps, true});
    const Gelu g = mlp.tanh_approximation ? Gelu::kTanh : Gelu::kErf;
    const int64_t I = mlp.I;
    if (M > kGemvMaxRows && K > 0 && I > 0 && mlp.fc1.dtype == mlp.fc2.dtype && tensor_cores(be, mlp.fc2.dtype)) {
        CudaBackend::Scratch h(be, size_t(M * I) * 2);
        if (gelu_intermediate(be, h.as<void>(), y, M, K, I, mlp.fc1, mlp.fc1_bias, g)) {
            GemmInput hin(be, h.as<void>(), mlp.fc2.dtype, M, I);
            project(be, out, hin, M, I, mlp.N, mlp.fc2, Epilogue{mlp.fc2_bias}, residual);
            return;
        }
    }
    // The intermediate in f32: fc1 with its epilogue, then fc2 as a plain projection.
    CudaBackend::Scratch h(be, size_t(M * I) * sizeof(float));
    if (I > 0) project(be, h.as<float>(), y, M, K, I, mlp.fc1, Epilogue{mlp.fc1_bias, g}, nullptr);
    GemmInput hin(be, h.as<float>(), M, I);
    project(be, out, hin, M, I, mlp.N, mlp.fc2, Epilogue{mlp.fc2_bias}, residual);
}

}  // namespace cuda
}  // namespace qwen3vl
