// Work splitting for linear / linear_swiglu, the epilogues, and the portable scalar path.
#include "gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dtype.h"
#include "error.h"
#include "quant.h"

namespace qwen3vl {
namespace cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

float load_elem(Weight v, size_t i) {
    const auto* p = static_cast<const uint8_t*>(v.data);
    if (v.dtype == QWEN3VL_DTYPE_Q8) {  // rows are whole blocks, so element i's block is i / 32 of the scale plane
        uint16_t d;
        std::memcpy(&d, static_cast<const uint8_t*>(v.scales) + (i / 32) * 2, 2);
        return f16_to_f32(d) * float(static_cast<const int8_t*>(v.data)[i]);
    }
    if (v.dtype == QWEN3VL_DTYPE_Q4) {  // super-block i / 256 of the header plane, group (i % 256) / 32
        const uint8_t* h = static_cast<const uint8_t*>(v.scales) + (i / 256) * 16;
        const int g = int((i % 256) / 32), j = int(i % 32);
        int sc, mn;
        q4_group_scale_min(h, g, &sc, &mn);
        const uint8_t byte = p[(i / 32) * 16 + size_t(j % 16)];
        const float q = float(j < 16 ? (byte & 15) : (byte >> 4));
        return (f16_to_f32(uint16_t(h[0] | (h[1] << 8))) * float(sc)) * q -
               f16_to_f32(uint16_t(h[2] | (h[3] << 8))) * float(mn);
    }
    if (v.dtype == QWEN3VL_DTYPE_F32) {
        float f;
        std::memcpy(&f, p + i * 4, 4);  // memcpy: the data may be unaligned
        return f;
    }
    uint16_t h;
    std::memcpy(&h, p + i * 2, 2);
    return v.dtype == QWEN3VL_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

float silu(float g) { return g / (1.0f + std::exp(-g)); }

// Per-thread scratch, 64-byte aligned, grown on demand and kept for the thread's lifetime (pool threads live as long
// as their backend), so steady-state calls allocate nothing.
float* thread_scratch(size_t floats) {
    thread_local std::vector<float> buf;
    if (buf.size() < floats + 16) buf.resize(floats + 16);
    const auto p = reinterpret_cast<uintptr_t>(buf.data());
    return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

std::vector<float> widen_bias(Weight bias, int64_t N) {
    std::vector<float> b;
    if (!bias.data) return b;
    b.resize(size_t(N));
    for (int64_t n = 0; n < N; ++n) b[size_t(n)] = load_elem(bias, size_t(n));
    return b;
}

// Splits [0, N) into chunks of a multiple of `align` rows, about four per thread so that a slow thread is caught up.
int64_t chunk_rows(int64_t N, int threads, int64_t align, int64_t min_rows) {
    return std::max(min_rows, round_up(ceil_div(N, int64_t(threads) * 4), align));
}

// Scalar path: per chunk of N, four weight rows at a time are widened to f32 and dotted with every row of x
// (sequential f32 sums).
void scalar_path(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w,
                 Weight up, const float* bias) {
    constexpr int64_t R = 4;
    const bool swiglu = up.data != nullptr;
    const int64_t chunk = chunk_rows(N, pool.size(), R, R);
    pool.parallel_for(size_t(ceil_div(N, chunk)), [&](size_t task, int) {
        const int64_t n0 = int64_t(task) * chunk, n1 = std::min(N, n0 + chunk);
        float* wf = thread_scratch(size_t(2 * R * K));
        float* uf = wf + R * K;
        for (int64_t nb = n0; nb < n1; nb += R) {
            const int64_t rows = std::min(R, n1 - nb);
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t k = 0; k < K; ++k) {
                    wf[r * K + k] = load_elem(w, size_t((nb + r) * K + k));
                    if (swiglu) uf[r * K + k] = load_elem(up, size_t((nb + r) * K + k));
                }
            for (int64_t m = 0; m < M; ++m) {
                const float* xm = x + m * K;
                for (int64_t r = 0; r < rows; ++r) {
                    float s = 0.0f, su = 0.0f;
                    for (int64_t k = 0; k < K; ++k) s += xm[k] * wf[r * K + k];
                    if (swiglu) {
                        for (int64_t k = 0; k < K; ++k) su += xm[k] * uf[r * K + k];
                        s = silu(s) * su;
                    } else if (bias) {
                        s += bias[nb + r];
                    }
                    out[m * N + nb + r] = s;
                }
            }
        }
    });
}

// x in the forms gemv_avx2 reads for the weight dtypes of one call, each made once (before the threads split N):
// permuted for bf16, quantized per block for Q8 and Q4 (one quantization serves both; Q4 reorders it and adds the
// blocks' sums), so that a gate and an up share it.
class GemvInputs {
public:
    GemvInputs(const float* x, int64_t M, int64_t K, Q8Gemv q8) : x_(x), M_(M), K_(K), q8_(q8) {}

    GemvX operator()(qwen3vl_dtype d) {
        GemvX r;
        if (d == QWEN3VL_DTYPE_Q8 || d == QWEN3VL_DTYPE_Q4) {
            const int64_t nb = K_ / 32;
            if (q_.empty()) {
                q_.resize(size_t(M_ * K_));
                dq_.resize(size_t(M_ * nb));
                for (int64_t m = 0; m < M_; ++m)
                    gemv_quantize_x_avx2(q_.data() + m * K_, dq_.data() + m * nb, x_ + m * K_, K_);
            }
            r.q = q_.data();
            r.d = dq_.data();
            r.q8 = q8_;
            if (d == QWEN3VL_DTYPE_Q4) {
                if (q4_.empty()) {
                    q4_.resize(size_t(M_ * K_));
                    d4_.resize(size_t(M_ * nb));
                    s4_.resize(size_t(M_ * nb));
                    for (int64_t m = 0; m < M_; ++m)
                        q4_reorder_x(q4_.data() + m * K_, d4_.data() + m * nb, s4_.data() + m * nb,
                                     q_.data() + m * K_, dq_.data() + m * nb, K_);
                }
                r.q = q4_.data();
                r.d = d4_.data();
                r.s = s4_.data();
            }
        } else if (d == QWEN3VL_DTYPE_BF16) {
            if (perm_.empty()) {
                perm_.resize(size_t(M_ * K_));
                for (int64_t m = 0; m < M_; ++m) gemv_permute_x_avx2(perm_.data() + m * K_, x_ + m * K_, K_);
            }
            r.f = perm_.data();
        } else {
            r.f = x_;
        }
        return r;
    }

private:
    const float* x_;
    int64_t M_, K_;
    Q8Gemv q8_;
    std::vector<float> perm_, dq_, d4_, s4_;
    std::vector<int8_t> q_, q4_;
};

void gemv_path(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w,
               Weight up, const float* bias, Q8Gemv q8) {
    GemvInputs inputs(x, M, K, q8);
    const GemvX xw = inputs(w.dtype);
    const bool swiglu = up.data != nullptr;
    const GemvX xu = swiglu ? inputs(up.dtype) : GemvX{};
    // Each task reads chunk * K weights; >= 64 rows keeps a task well above the pool's dispatch cost.
    const int64_t chunk = chunk_rows(N, pool.size(), 16, 64);
    pool.parallel_for(size_t(ceil_div(N, chunk)), [&](size_t task, int) {
        const int64_t n0 = int64_t(task) * chunk, n1 = std::min(N, n0 + chunk);
        if (!swiglu) {
            gemv_avx2(out + n0, N, xw, M, K, w, n0, n1);
            if (bias)
                for (int64_t m = 0; m < M; ++m)
                    for (int64_t n = n0; n < n1; ++n) out[m * N + n] += bias[n];
            return;
        }
        // gate and up are streamed together, B rows of each in turn. Each call prefetches only within its rows, so
        // its last group starts cold: 64 rather than 16 rows a call made decode gate_up 7% faster (bf16) and 10%
        // (q8) on one thread (medians of 3, bench_ops_linear). A Q4 group of rows is twice as many rows (q4_row_step:
        // 16 at K = 2048), so a Q4 call takes 256: decode gate_up q4 [6144x2048]x2, one thread, min of 4 alternating
        // runs: 1232 -> 1099 us (VNNI), 1307 -> 1127 us (AVX2); 128 rows: 1108, 1235 us.
        constexpr int64_t kMaxB = 256;
        const int64_t B = w.dtype == QWEN3VL_DTYPE_Q4 || up.dtype == QWEN3VL_DTYPE_Q4 ? kMaxB : 64;
        float g[kGemvMaxRows * kMaxB], u[kGemvMaxRows * kMaxB];
        for (int64_t nb = n0; nb < n1; nb += B) {
            const int64_t ne = std::min(n1, nb + B);
            gemv_avx2(g, B, xw, M, K, w, nb, ne);
            gemv_avx2(u, B, xu, M, K, up, nb, ne);
            for (int64_t m = 0; m < M; ++m) silu_mul_avx2(out + m * N + nb, g + m * B, u + m * B, size_t(ne - nb));
        }
    });
}

void gemm_path(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w,
               Weight up, const float* bias) {
    const int64_t threads = pool.size();
    const int64_t m_tiles = ceil_div(M, kGemmTileRows);
    // Enough column tiles for two tasks per thread where N allows, so that both cores stay busy on small problems.
    const int64_t n_tiles =
        std::max(ceil_div(N, kGemmTileCols), std::min(ceil_div(N, 16), ceil_div(2 * threads, m_tiles)));
    const int64_t mt = round_up(ceil_div(M, m_tiles), 6);
    const int64_t nt = round_up(ceil_div(N, n_tiles), 16);
    const int64_t mtiles = ceil_div(M, mt), ntiles = ceil_div(N, nt);
    pool.parallel_for(size_t(mtiles * ntiles), [&](size_t task, int) {
        // Consecutive tasks share a column tile: threads running together read the same weight block.
        const int64_t ni = int64_t(task) / mtiles, mi = int64_t(task) % mtiles;
        GemmTile t;
        t.x = x;
        t.K = K;
        t.w = w;
        t.up = up;
        t.bias = bias;
        t.out = out;
        t.ldo = N;
        t.m0 = mi * mt;
        t.m1 = std::min(M, t.m0 + mt);
        t.n0 = ni * nt;
        t.n1 = std::min(N, t.n0 + nt);
        gemm_tile_avx2(t, thread_scratch(gemm_scratch_floats()));
    });
}

void run(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w, Weight up,
         Weight bias, CpuKernels kernels, Q8Gemv q8) {
    if (M <= 0 || N <= 0) return;
    const std::vector<float> b = widen_bias(bias, N);
    const float* bp = b.empty() ? nullptr : b.data();
    if (K <= 0) {  // empty sums: silu(0) * 0 = 0, or the bias
        for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) out[m * N + n] = bp ? bp[n] : 0.0f;
        return;
    }
    for (const Weight* v : {&w, &up})  // the C API's tensors guarantee it; the AVX2 kernels assume it
        if (v->dtype == QWEN3VL_DTYPE_Q8)
            require(K % 32 == 0 && v->scales != nullptr,
                    "q8 linear: K = " + std::to_string(K) + " must be whole blocks of 32, with the scale plane");
        else if (v->dtype == QWEN3VL_DTYPE_Q4)
            require(K % 256 == 0 && v->scales != nullptr,
                    "q4 linear: K = " + std::to_string(K) + " must be whole super-blocks of 256, with the header plane");
    if (kernels == CpuKernels::Scalar) return scalar_path(pool, out, x, M, K, N, w, up, bp);
    if (M <= kGemvMaxRows) return gemv_path(pool, out, x, M, K, N, w, up, bp, q8);
    gemm_path(pool, out, x, M, K, N, w, up, bp);
}

Q8Gemv choose_q8_gemv() {
    const char* requested = std::getenv("QWEN3VL_CPU_Q8_GEMV");
    if (requested && std::strcmp(requested, "avx2") == 0) return Q8Gemv::Avx2;
    return cpu_has_avx512_vnni() ? Q8Gemv::Avx512Vnni : Q8Gemv::Avx2;
}

}  // namespace

void q4_reorder_x(int8_t* dst, float* d_out, float* s, const int8_t* src, const float* d, int64_t K) {
    for (int64_t u = 0; u < K / 128; ++u)
        for (int64_t j = 0; j < 4; ++j) {
            std::memcpy(dst + u * 128 + j * 16, src + u * 128 + j * 32, 16);
            std::memcpy(dst + u * 128 + 64 + j * 16, src + u * 128 + j * 32 + 16, 16);
        }
    for (int64_t t = 0; t < K / 256; ++t)
        for (int i = 0; i < 8; ++i) {
            const int64_t b = t * 8 + kQ4Order[i];
            int32_t sum = 0;
            for (int64_t k = 0; k < 32; ++k) sum += src[b * 32 + k];
            d_out[t * 8 + i] = d[b];
            s[t * 8 + i] = d[b] * float(sum);  // |sum| <= 32 * 127: exact in f32; one rounding
        }
}

Q8Gemv q8_gemv_default() {
    static const Q8Gemv chosen = choose_q8_gemv();
    return chosen;
}

const char* q8_gemv_name(Q8Gemv g) { return g == Q8Gemv::Avx512Vnni ? "avx512-vnni" : "avx2"; }

void linear(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight w,
            Weight bias, CpuKernels kernels, Q8Gemv q8) {
    run(pool, out, x, M, K, N, w, Weight{}, bias, kernels, q8);
}

void linear_swiglu(ThreadPool& pool, float* out, const float* x, int64_t M, int64_t K, int64_t N, Weight gate,
                   Weight up, CpuKernels kernels, Q8Gemv q8) {
    run(pool, out, x, M, K, N, gate, up, Weight{}, kernels, q8);
}

}  // namespace cpu
}  // namespace qwen3vl
