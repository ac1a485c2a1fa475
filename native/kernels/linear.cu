// GEMV for decode-sized M and cuBLASLt GEMMs for the rest (the regimes are described in linear.cuh).
//
// GEMV: each warp owns one output row n at a time (grid-stride over N, grid sized to fill every SM). Lanes stream
// the weight row in 16-byte loads (8 bf16 / f16 or 4 f32 elements; bf16 widened by a shift), multiply with the
// matching elements of all M rows of x (staged in shared memory when they fit in 48 KiB) into M fp32
// accumulators, and finish with a warp-shuffle sum per row of x. Rows whose start is not 16-byte aligned (K * size
// not a multiple of 16, or an unaligned view) take the same loop with one element per lane.
//
// GEMM: row-major out[M, N] = x W^T is the column-major product out^T[N, M] = W^T[N, K] x^T[K, M] ("TN": W as a
// column-major K x N matrix, transposed, times x as K x M), the layout the tensor-core kernels prefer.
#include <algorithm>
#include <cstdint>

#include "common.cuh"
#include "convert.cuh"
#include "elementwise.cuh"
#include "linear.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

constexpr unsigned kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / kWarp;
constexpr size_t kGemvSharedX = 48 * 1024;
// Largest f32 copy of a weight block made for the fp32 GEMM of 16-bit weights.
constexpr size_t kWidenBytes = size_t(64) << 20;

// Widening of the 16 bytes of one vector load, and of one element.
template <class W>
struct Vec;
template <>
struct Vec<float> {
    static constexpr int E = 4;
    __device__ static void unpack(const uint4& u, float* f) {
        f[0] = __uint_as_float(u.x);
        f[1] = __uint_as_float(u.y);
        f[2] = __uint_as_float(u.z);
        f[3] = __uint_as_float(u.w);
    }
    __device__ static float one(float v) { return v; }
};
template <>
struct Vec<__nv_bfloat16> {
    static constexpr int E = 8;
    __device__ static void unpack(const uint4& u, float* f) {
        const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
    __device__ static float one(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <>
struct Vec<__half> {
    static constexpr int E = 8;
    __device__ static void unpack(const uint4& u, float* f) {
        const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            __half2 h;
            memcpy(&h, &w[i], 4);
            const float2 p = __half22float2(h);
            f[2 * i] = p.x;
            f[2 * i + 1] = p.y;
        }
    }
    __device__ static float one(__half v) { return __half2float(v); }
};

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// out[m, n] = dot(x[m], w[n]) (+ bias[n]), or silu(dot(x[m], w[n])) * dot(x[m], up[n]) when kSwiglu.
template <class W, bool kSwiglu>
__global__ void __launch_bounds__(kGemvThreads)
    gemv_kernel(float* out, const float* x, int M, int64_t K, int64_t N, const W* w, const W* up, const void* bias,
                qwen3vl_dtype bias_dtype, bool vec, bool stage_x) {
    extern __shared__ float x_shared[];
    const float* xs = x;
    if (stage_x) {
        for (int64_t i = threadIdx.x; i < int64_t(M) * K; i += blockDim.x) x_shared[i] = x[i];
        __syncthreads();
        xs = x_shared;
    }
    constexpr int E = Vec<W>::E;
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const int64_t k_vec = vec ? K / E * E : 0;
    for (int64_t n = int64_t(blockIdx.x) * kGemvWarps + warp; n < N; n += int64_t(gridDim.x) * kGemvWarps) {
        float acc[kGemvMaxRows];
        float acc_up[kSwiglu ? kGemvMaxRows : 1];
#pragma unroll
        for (int m = 0; m < kGemvMaxRows; ++m) acc[m] = 0.0f;
#pragma unroll
        for (int m = 0; m < (kSwiglu ? kGemvMaxRows : 1); ++m) acc_up[m] = 0.0f;
        const W* wr = w + n * K;
        const W* ur = kSwiglu ? up + n * K : nullptr;
        for (int64_t k0 = int64_t(lane) * E; k0 < k_vec; k0 += int64_t(kWarp) * E) {
            float wf[E], uf[E];
            Vec<W>::unpack(__ldg(reinterpret_cast<const uint4*>(wr + k0)), wf);
            if (kSwiglu) Vec<W>::unpack(__ldg(reinterpret_cast<const uint4*>(ur + k0)), uf);
#pragma unroll
            for (int m = 0; m < kGemvMaxRows; ++m) {
                if (m < M) {
                    const float* xm = xs + m * K + k0;
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        acc[m] += xm[e] * wf[e];
                        if (kSwiglu) acc_up[kSwiglu ? m : 0] += xm[e] * uf[e];
                    }
                }
            }
        }
        for (int64_t k = k_vec + lane; k < K; k += kWarp) {
            const float wv = Vec<W>::one(wr[k]);
            const float uv = kSwiglu ? Vec<W>::one(ur[k]) : 0.0f;
#pragma unroll
            for (int m = 0; m < kGemvMaxRows; ++m) {
                if (m < M) {
                    acc[m] += xs[m * K + k] * wv;
                    if (kSwiglu) acc_up[kSwiglu ? m : 0] += xs[m * K + k] * uv;
                }
            }
        }
#pragma unroll
        for (int m = 0; m < kGemvMaxRows; ++m) {
            if (m < M) {
                const float g = warp_sum(acc[m]);
                const float u = kSwiglu ? warp_sum(acc_up[kSwiglu ? m : 0]) : 0.0f;
                if (lane == unsigned(m)) {
                    if (kSwiglu) out[m * N + n] = silu(g) * u;
                    else out[m * N + n] = bias ? g + load_f32(bias, bias_dtype, size_t(n)) : g;
                }
            }
        }
    }
}

__global__ void add_bias_kernel(float* out, int64_t M, int64_t N, const void* bias, qwen3vl_dtype bt) {
    const int64_t total = M * N;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
        out[i] += load_f32(bias, bt, size_t(i % N));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class W, bool kSwiglu>
void launch_gemv(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, const void* w,
                 const void* up, Weight bias) {
    const bool vec = (K * int64_t(sizeof(W))) % 16 == 0 && aligned16(w) && (!kSwiglu || aligned16(up));
    const size_t x_bytes = size_t(M * K) * sizeof(float);
    const bool stage_x = x_bytes <= kGemvSharedX;
    const int64_t blocks = std::min<int64_t>((N + kGemvWarps - 1) / kGemvWarps, int64_t(be.multiprocessors()) * 8);
    gemv_kernel<W, kSwiglu><<<unsigned(std::max<int64_t>(blocks, 1)), kGemvThreads, stage_x ? x_bytes : 0,
                              be.stream()>>>(out, x, int(M), K, N, static_cast<const W*>(w),
                                             static_cast<const W*>(up), bias.data, bias.dtype, vec, stage_x);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

template <bool kSwiglu>
void gemv(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, const void* up,
          Weight bias) {
    switch (w.dtype) {
        case QWEN3VL_DTYPE_BF16: launch_gemv<__nv_bfloat16, kSwiglu>(be, out, x, M, K, N, w.data, up, bias); break;
        case QWEN3VL_DTYPE_F16: launch_gemv<__half, kSwiglu>(be, out, x, M, K, N, w.data, up, bias); break;
        default: launch_gemv<float, kSwiglu>(be, out, x, M, K, N, w.data, up, bias); break;
    }
}

cudaDataType_t cuda_type(qwen3vl_dtype t) {
    return t == QWEN3VL_DTYPE_BF16 ? CUDA_R_16BF : t == QWEN3VL_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

// Alignment in bytes that a matrix guarantees to the kernels: of its pointer and of its row starts, at most 256.
uint32_t alignment(const void* p, int64_t ld_bytes) {
    const uintptr_t v = reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(ld_bytes) | uintptr_t(256);
    return static_cast<uint32_t>(v & (~v + 1));
}

// The descriptors of one cuBLASLt call, destroyed on every path out.
struct LtCall {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~LtCall() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

// d[m * ldd + j] = dot(x[m], w[j]) for m < M, j < n: w [n, K] and x [M, K] both of type ab (f32, f16 or bf16),
// fp32 accumulation and output. False when cuBLASLt has no algorithm for this combination (the caller falls back).
bool lt_matmul(CudaBackend& be, float* d, int64_t ldd, const void* w, const void* x, cudaDataType_t ab,
               size_t esize, int64_t n, int64_t M, int64_t K) {
    LtCall c;
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.a, ab, uint64_t(K), uint64_t(n), K));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.b, ab, uint64_t(K), uint64_t(M), K));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c.d, CUDA_R_32F, uint64_t(n), uint64_t(M), ldd));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&c.pref));
    void* workspace = be.gemm_workspace();
    const uint64_t ws_bytes = CudaBackend::kGemmWorkspaceBytes;
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                              &ws_bytes, sizeof ws_bytes));
    const uint32_t align_a = alignment(w, K * int64_t(esize)), align_b = alignment(x, K * int64_t(esize)),
                   align_d = alignment(d, ldd * 4);
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                              &align_a, sizeof align_a));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                              &align_b, sizeof align_b));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                              &align_d, sizeof align_d));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                              &align_d, sizeof align_d));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t hs =
        cublasLtMatmulAlgoGetHeuristic(be.cublaslt(), c.op, c.a, c.b, c.d, c.d, c.pref, 1, &result, &found);
    if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && found == 0)) return false;
    QWEN3VL_CUBLAS_CHECK(hs);
    const float alpha = 1.0f, beta = 0.0f;
    const cublasStatus_t ms = cublasLtMatmul(be.cublaslt(), c.op, &alpha, w, c.a, x, c.b, &beta, d, c.d, d, c.d,
                                             &result.algo, workspace, ws_bytes, be.stream());
    if (ms == CUBLAS_STATUS_NOT_SUPPORTED) return false;
    QWEN3VL_CUBLAS_CHECK(ms);
    return true;
}

// out[M, N] = x W^T through cuBLASLt (M > kGemvMaxRows, K > 0), no bias.
void gemm(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w) {
    const bool tensor_cores = !be.fp32_math() && ((w.dtype == QWEN3VL_DTYPE_BF16 && be.compute_capability() >= 80) ||
                                                  (w.dtype == QWEN3VL_DTYPE_F16 && be.compute_capability() >= 70));
    if (tensor_cores) {
        CudaBackend::Scratch xw(be, size_t(M * K) * 2);
        convert(xw.as<void>(), w.dtype, x, QWEN3VL_DTYPE_F32, size_t(M * K), be.stream());
        if (lt_matmul(be, out, N, w.data, xw.as<void>(), cuda_type(w.dtype), 2, N, M, K)) return;
    }
    if (w.dtype == QWEN3VL_DTYPE_F32) {
        if (!lt_matmul(be, out, N, w.data, x, CUDA_R_32F, 4, N, M, K))
            fail(QWEN3VL_STATUS_DEVICE_ERROR, "qwen3vl_op_linear: cuBLASLt has no fp32 GEMM for this shape");
        return;
    }
    // fp32 GEMM over f32 copies of blocks of weight rows (columns n0 .. n0 + rows of out).
    const size_t esize = 2;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, int64_t(kWidenBytes / (size_t(K) * 4))));
    CudaBackend::Scratch wf(be, size_t(chunk * K) * 4);
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t rows = std::min(chunk, N - n0);
        convert(wf.as<void>(), QWEN3VL_DTYPE_F32, static_cast<const char*>(w.data) + size_t(n0 * K) * esize, w.dtype,
                size_t(rows * K), be.stream());
        if (!lt_matmul(be, out + n0, N, wf.as<void>(), x, CUDA_R_32F, 4, rows, M, K))
            fail(QWEN3VL_STATUS_DEVICE_ERROR, "qwen3vl_op_linear: cuBLASLt has no fp32 GEMM for this shape");
    }
}

// out = x W^T (+ bias) for any M.
void project(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight bias) {
    if (M <= kGemvMaxRows) {
        gemv<false>(be, out, x, M, K, N, w, nullptr, bias);
        return;
    }
    if (K == 0) {
        QWEN3VL_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(M * N) * sizeof(float), be.stream()));
    } else {
        gemm(be, out, x, M, K, N, w);
    }
    if (bias.data) {
        add_bias_kernel<<<grid_for(size_t(M * N), 256), 256, 0, be.stream()>>>(out, M, N, bias.data, bias.dtype);
        QWEN3VL_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace

void linear(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight bias) {
    if (M <= 0 || N <= 0) return;
    be.activate();
    project(be, out, x, M, K, N, w, bias);
}

void linear_swiglu(CudaBackend& be, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight gate,
                   Weight up) {
    if (M <= 0 || N <= 0) return;
    be.activate();
    if (M <= kGemvMaxRows && gate.dtype == up.dtype) {
        gemv<true>(be, out, x, M, K, N, gate, up.data, Weight{});
        return;
    }
    CudaBackend::Scratch u(be, size_t(M * N) * sizeof(float));
    project(be, out, x, M, K, N, gate, Weight{});
    project(be, u.as<float>(), x, M, K, N, up, Weight{});
    swiglu(be, out, out, u.as<float>(), M * N);
}

}  // namespace cuda
}  // namespace qwen3vl
