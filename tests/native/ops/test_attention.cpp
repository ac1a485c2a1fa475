// The attention ops (native/core/ops.h, QWEN3VL_ATTENTION_OPS): attention (CAUSAL over a KV cache with GQA, or
// SEGMENTS, block-diagonal over a fused vision qkv) and the fused qk_norm_rope_attention (the rotary prologue
// qk_norm_rope_kv, then causal attention). The suites and helpers are described in op_test_util.h.
//
// Tolerances. CPU kernels against double references: NMSE = mse(got, ref) / mse(ref, 0). Attention accumulates dot
// products and exponentials over hundreds of keys in f32 with a 2-ulp polynomial exp: 1e-10. The fused op through the C
// API: per-element bounds derived below, and NMSE 1e-10. CUDA against the CPU: see CudaAttentionOps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "attention.h"
#include "op_test_util.h"
#include "quant.h"
#include "reference_util.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::testing;

// ---- CPU kernels ------------------------------------------------------------------------------------------------

// softmax(q k^T / sqrt(D)) v over the keys [k0, k1) for one query row, in double.
void attend_ref(double* out, const float* q, const std::vector<double>& K, const std::vector<double>& V, int64_t ld,
                int64_t off, int64_t k0, int64_t k1, int64_t D) {
    std::vector<double> s(k1 - k0);
    double m = -INFINITY;
    for (int64_t j = k0; j < k1; ++j) {
        double d = 0;
        for (int64_t i = 0; i < D; ++i) d += double(q[i]) * K[j * ld + off + i];
        s[j - k0] = d / std::sqrt(double(D));
        m = std::max(m, s[j - k0]);
    }
    double l = 0;
    for (double& x : s) l += (x = std::exp(x - m));
    for (int64_t i = 0; i < D; ++i) {
        double a = 0;
        for (int64_t j = k0; j < k1; ++j) a += s[j - k0] * V[j * ld + off + i];
        out[i] = a / l;
    }
}

struct Cache {
    qwen3vl_dtype dtype;
    std::vector<float> f;
    std::vector<uint16_t> h;    // f16 / bf16 values; Q8: the block scales
    std::vector<int8_t> q;      // Q8: the int8 values
    std::vector<double> value;  // what the cache holds, as double (NaN in the rows never written)
    const void* data() const {
        return dtype == QWEN3VL_DTYPE_F32  ? static_cast<const void*>(f.data())
               : dtype == QWEN3VL_DTYPE_Q8 ? static_cast<const void*>(q.data())
                                           : h.data();
    }
    const uint16_t* scales() const { return dtype == QWEN3VL_DTYPE_Q8 ? h.data() : nullptr; }
};

// A cache of cap rows whose first `filled` rows are random and the rest NaN: reading past the visible keys shows.
// Q8: the values quantized as the cache writers do (quantize_kv_q8; the NaN rows get NaN scales).
Cache make_cache(Rng& rng, qwen3vl_dtype dtype, int64_t cap, int64_t filled, int64_t row) {
    Cache c{dtype, {}, {}, {}, {}};
    if (dtype == QWEN3VL_DTYPE_Q8) {
        std::vector<float> x(size_t(cap * row));
        for (int64_t i = 0; i < cap * row; ++i) x[size_t(i)] = i < filled * row ? rng.uniform(-2, 2) : kNaN;
        c.q.resize(x.size());
        c.h.resize(x.size() / 32);
        quantize_kv_q8(x.data(), int64_t(x.size()), c.q.data(), c.h.data());
        std::vector<float> deq(x.size());
        dequantize_q8(c.q.data(), c.h.data(), int64_t(x.size()), deq.data());
        c.value.assign(deq.begin(), deq.end());
        c.f = deq;  // the same values as an f32 cache
        return c;
    }
    for (int64_t i = 0; i < cap * row; ++i) {
        const float x = i < filled * row ? rng.uniform(-2, 2) : kNaN;
        if (dtype == QWEN3VL_DTYPE_F32) {
            c.f.push_back(x);
            c.value.push_back(x);
        } else {
            c.h.push_back(dtype == QWEN3VL_DTYPE_F16 ? f32_to_f16(x) : f32_to_bf16(x));
            c.value.push_back(dtype == QWEN3VL_DTYPE_F16 ? f16_to_f32(c.h.back()) : bf16_to_f32(c.h.back()));
        }
    }
    return c;
}

TEST(AttentionOps, CausalEqualsFullSoftmaxOverTheVisibleKeys) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    struct Case {
        int64_t D, T, Hkv, G, n_past;
        qwen3vl_dtype cache;
    };
    const Case cases[] = {
        {16, 1, 2, 1, 0, QWEN3VL_DTYPE_F32},    {32, 3, 2, 2, 5, QWEN3VL_DTYPE_F32},
        {64, 17, 1, 4, 0, QWEN3VL_DTYPE_F16},   {128, 1, 2, 2, 200, QWEN3VL_DTYPE_BF16},
        {128, 130, 2, 2, 70, QWEN3VL_DTYPE_F32}, {80, 17, 3, 2, 64, QWEN3VL_DTYPE_BF16},
        {128, 3, 1, 4, 129, QWEN3VL_DTYPE_F16}, {36, 130, 1, 1, 0, QWEN3VL_DTYPE_F32},
        {32, 3, 2, 2, 5, QWEN3VL_DTYPE_Q8},     {128, 1, 2, 2, 200, QWEN3VL_DTYPE_Q8},
        {64, 17, 1, 4, 0, QWEN3VL_DTYPE_Q8},    {128, 130, 2, 2, 70, QWEN3VL_DTYPE_Q8},
    };
    for (CpuKernels k : kernel_sets())
        for (const Case& c : cases) {
            SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " D=" + std::to_string(c.D) + " T=" + std::to_string(c.T) +
                         " Hkv=" + std::to_string(c.Hkv) + " G=" + std::to_string(c.G) + " n_past=" +
                         std::to_string(c.n_past) + " " + dtype_name(c.cache));
            const int64_t Hq = c.Hkv * c.G, cap = c.n_past + c.T + 5, row = c.Hkv * c.D;
            const Cache K = make_cache(rng, c.cache, cap, c.n_past + c.T, row);
            const Cache V = make_cache(rng, c.cache, cap, c.n_past + c.T, row);
            const std::vector<float> q = rng.vec(c.T * Hq * c.D, -2, 2);
            std::vector<double> want(q.size());
            for (int64_t t = 0; t < c.T; ++t)
                for (int64_t h = 0; h < Hq; ++h)
                    attend_ref(&want[(t * Hq + h) * c.D], &q[(t * Hq + h) * c.D], K.value, V.value, row,
                               (h / c.G) * c.D, 0, c.n_past + t + 1, c.D);
            std::vector<float> out(q.size(), kNaN);
            cpu::AttentionArgs a{};
            a.out = out.data();
            a.q = q.data();
            a.q_stride = Hq * c.D;
            a.k = K.data();
            a.v = V.data();
            a.kv_dtype = c.cache;
            a.k_scales = K.scales();
            a.v_scales = V.scales();
            a.kv_stride = row;
            a.tokens = c.T;
            a.q_heads = Hq;
            a.kv_heads = c.Hkv;
            a.head_dim = c.D;
            a.causal = true;
            a.n_past = c.n_past;
            cpu::attention(pool(), a, k);
            EXPECT_LT(nmse(out, want), 1e-10);
            if (c.cache != QWEN3VL_DTYPE_Q8) continue;
            // A Q8 cache reads as exactly its dequantized values: the same attention over an f32 cache holding them
            // gives the same bits (the tiles are packed to f32 either way).
            std::vector<float> same(q.size(), kNaN);
            a.out = same.data();
            a.k = K.f.data();
            a.v = V.f.data();
            a.kv_dtype = QWEN3VL_DTYPE_F32;
            a.k_scales = a.v_scales = nullptr;
            cpu::attention(pool(), a, k);
            EXPECT_EQ(0, std::memcmp(out.data(), same.data(), out.size() * sizeof(float))) << "q8 vs its f32 values";
        }
}

TEST(AttentionOps, PrefillEqualsTokenByTokenDecode) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    const int64_t D = 64, Hkv = 2, Hq = 4, T = 19, n_past = 7, row = Hkv * D;
    const Cache K = make_cache(rng, QWEN3VL_DTYPE_F32, n_past + T, n_past + T, row);
    const Cache V = make_cache(rng, QWEN3VL_DTYPE_F32, n_past + T, n_past + T, row);
    const std::vector<float> q = rng.vec(T * Hq * D);
    for (CpuKernels k : kernel_sets()) {
        cpu::AttentionArgs a{};
        a.q_stride = Hq * D;
        a.k = K.data();
        a.v = V.data();
        a.kv_dtype = QWEN3VL_DTYPE_F32;
        a.kv_stride = row;
        a.q_heads = Hq;
        a.kv_heads = Hkv;
        a.head_dim = D;
        a.causal = true;
        std::vector<float> prefill(q.size(), kNaN), decode(q.size(), kNaN);
        a.out = prefill.data();
        a.q = q.data();
        a.tokens = T;
        a.n_past = n_past;
        cpu::attention(pool(), a, k);
        for (int64_t t = 0; t < T; ++t) {
            a.out = decode.data() + t * Hq * D;
            a.q = q.data() + t * Hq * D;
            a.tokens = 1;
            a.n_past = n_past + t;
            cpu::attention(pool(), a, k);
        }
        EXPECT_EQ(prefill, decode) << cpu_kernels_name(k);  // same tiles, same order: bit-equal
    }
}

TEST(AttentionOps, SegmentsAttendWithinTheirOwnSegment) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (int64_t D : {16, 64, 72}) {
            const int64_t H = 3;
            const std::vector<int32_t> seg = {0, 5, 5, 69, 130, 131};  // unequal lengths, one empty, one of 1
            const int64_t T = seg.back();
            const std::vector<float> qkv = rng.vec(T * 3 * H * D, -2, 2);
            const std::vector<double> qkv_d(qkv.begin(), qkv.end());
            std::vector<double> want(T * H * D);
            const int64_t ld = 3 * H * D;
            // Keys of head h live at +H*D in each token row, values at +2*H*D.
            std::vector<double> Kd(qkv_d.begin() + H * D, qkv_d.end()), Vd(qkv_d.begin() + 2 * H * D, qkv_d.end());
            Kd.resize(T * ld);
            Vd.resize(T * ld);
            for (size_t s = 0; s + 1 < seg.size(); ++s)
                for (int64_t t = seg[s]; t < seg[s + 1]; ++t)
                    for (int64_t h = 0; h < H; ++h) {
                        attend_ref(&want[(t * H + h) * D], &qkv[t * ld + h * D], Kd, Vd, ld, h * D, seg[s],
                                   seg[s + 1], D);
                    }
            std::vector<float> out(T * H * D, kNaN);
            cpu::AttentionArgs a{};
            a.out = out.data();
            a.q = qkv.data();
            a.q_stride = ld;
            a.k = qkv.data() + H * D;
            a.v = qkv.data() + 2 * H * D;
            a.kv_dtype = QWEN3VL_DTYPE_F32;
            a.kv_stride = ld;
            a.tokens = T;
            a.q_heads = H;
            a.kv_heads = H;
            a.head_dim = D;
            a.causal = false;
            a.segments = seg.data();
            a.n_segments = int64_t(seg.size()) - 1;
            cpu::attention(pool(), a, k);
            EXPECT_LT(nmse(out, want), 1e-10) << cpu_kernels_name(k) << " D=" << D;
        }
}

// ---- C API ------------------------------------------------------------------------------------------------------

class AttentionOpsCApi : public CApiOpTest {};

TEST_F(AttentionOpsCApi, NullTensorsAreNamed) {
    qwen3vl_tensor* x = f32({2, 8});
    EXPECT_INVALID(op::attention(f32({2, 1, 8}), f32({2, 1, 8}), nullptr, x, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "qwen3vl_op_attention: k_cache is NULL");
}

TEST_F(AttentionOpsCApi, AttentionArgumentsAreChecked) {
    const int64_t D = 8;
    qwen3vl_tensor *q = f32({2, 3, D}), *out = f32({2, 3, D}), *kc = f32({5, 2, D}), *vc = f32({5, 2, D});
    EXPECT_INVALID(op::attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "q has 3 heads, not a multiple of the cache's 2");
    qwen3vl_tensor* q4 = f32({2, 4, D});
    qwen3vl_tensor* out4 = f32({2, 4, D});
    EXPECT_INVALID(op::attention(out4, q4, kc, vc, 4, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "n_past 4 + 2 tokens exceeds the cache's 5 rows");
    EXPECT_INVALID(op::attention(out4, q4, kc, vc, 0, static_cast<qwen3vl_attention_mask>(7), nullptr, nullptr),
                   "unknown mask 7");
    EXPECT_INVALID(op::attention(out4, q4, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, i32({2}, {0, 2}), nullptr),
                   "segments must be NULL");
    EXPECT_INVALID(op::attention(q4, q4, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr), "out overlaps q");
    qwen3vl_tensor* qkv = f32({5, 3, 2, D});
    qwen3vl_tensor* vout = f32({5, 2, D});
    EXPECT_INVALID(op::attention(vout, qkv, kc, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({2}, {0, 5}), nullptr),
                   "k_cache and v_cache must be NULL");
    EXPECT_INVALID(op::attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({3}, {0, 2, 4}), nullptr),
                   "segments must run from 0 to T = 5");
    EXPECT_INVALID(op::attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({3}, {0, 3, 2}), nullptr),
                   "segments must run from 0 to T");
    EXPECT_INVALID(op::attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({4}, {0, 3, 2, 5}), nullptr),
                   "segments decrease at index 2");
    EXPECT_INVALID(op::attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, nullptr, nullptr),
                   "segments is NULL");
}

// ---- A double reference of qwen3vl_op_qk_norm_rope_attention: per-head RMSNorm of q and k, interleaved M-RoPE as
// native/cpu/rope.h documents it, the new k / v rows at cache rows n_past .., causal GQA attention with scale
// 1 / sqrt(D). inv_freq and the angles are rounded to f32 as the contract fixes them (transformers' roundings: at
// position 5000 an angle's f32 rounding is ~3e-4 rad, far above the f32 arithmetic); the rest is in double.
//
// Bounds, with u = 2^-24 and gamma(n) = n u / (1 - n u) (Higham 3.1):
//  - normed and rotated q, k: the row's inverse RMS comes from a sum of D squares (gamma(D), halved by the root,
//    + 4u for the division, eps, root and 1 /), the two products 2u; the rotation x1 cos - x2 sin with cos / sin
//    rounded and two products and a difference adds 4u relative to |x1 cos| + |x2 sin| <= |r_d| + |r_d'| (d' the
//    pair partner, d +- D/2; the rotation keeps sqrt(x1^2 + x2^2)): err_d <= gamma(D + 10) (|r_d| + |r_d'|);
//  - a score q.k / sqrt(D): both factors' errors (2 gamma(D + 10)) and the f32 dot (gamma(D)) over
//    P = sum_d (|q_d| + |q_d'|)(|k_d| + |k_d'|), and the scale 3u: es <= gamma(3D + 28) P / sqrt(D) + 3u |s|;
//  - the output sum_j p_j v_j: scores off by at most S = max es move each p_j by a factor within exp(+-2S); the f32
//    exponentials (2 ulp), the running sum and rescaling per 64-key tile, the products and the division add
//    gamma(2 n_keys + 24): |err_i| <= (expm1(2S) + gamma(2 n_keys + 24)) sum_j p_j |v_ji|.
// These are worst cases; the typical error is a random walk, so NMSE <= 1e-10 is also required (as the CPU attention
// tests above: f32 dot products and exponentials over the keys).

struct TextAttentionCase {
    int64_t T, Hq, Hkv, D, cap, n_past;
    int64_t section[3];
};

struct TextAttentionRef {
    std::vector<double> k, k_err;      // normed and rotated k [T, Hkv, D]: the cache rows n_past ..
    std::vector<double> out, out_err;  // [T, Hq, D]
};

// |r_d| + |r_d'| for every element of rows of D (d' the pair partner, d +- D/2).
std::vector<double> pair_sums(const std::vector<double>& y, int64_t D) {
    const int64_t half = D / 2;
    std::vector<double> A(y.size());
    for (size_t o = 0; o < y.size(); o += size_t(D))
        for (int64_t i = 0; i < half; ++i)
            A[o + size_t(i)] = A[o + size_t(i + half)] = std::fabs(y[o + size_t(i)]) + std::fabs(y[o + size_t(i + half)]);
    return A;
}

// keys / values: the cache's rows before n_past (f32, [n_past, Hkv, D]); qn, kn: the norm weights' stored values.
TextAttentionRef text_attention_ref(const TextAttentionCase& c, const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, const std::vector<float>& qn,
                                    const std::vector<float>& kn, float eps, const std::vector<int32_t>& pos,
                                    float theta, const std::vector<float>& prior_k, const std::vector<float>& prior_v) {
    const int64_t T = c.T, D = c.D, G = c.Hq / c.Hkv;
    // RMSNorm then rotate-half of every head row (qk_norm_mrope_ref); A = |r_d| + |r_d'| per element.
    TextAttentionRef r;
    const std::vector<double> qr = qk_norm_mrope_ref(q, T, c.Hq, D, qn, eps, pos, theta, c.section);
    r.k = qk_norm_mrope_ref(k, T, c.Hkv, D, kn, eps, pos, theta, c.section);
    const std::vector<double> qA = pair_sums(qr, D), kA = pair_sums(r.k, D);
    r.k_err.resize(kA.size());
    for (size_t i = 0; i < kA.size(); ++i) r.k_err[i] = gamma_n(double(D + 10)) * kA[i];

    // All keys and values the queries can see: the cache's earlier rows (exact), then the new ones.
    const int64_t row = c.Hkv * D, n_all = c.n_past + T;
    std::vector<double> K(size_t(n_all * row)), V(size_t(n_all * row));
    for (int64_t i = 0; i < c.n_past * row; ++i) {
        K[size_t(i)] = prior_k[size_t(i)];
        V[size_t(i)] = prior_v[size_t(i)];
    }
    for (int64_t i = 0; i < T * row; ++i) {
        K[size_t(c.n_past * row + i)] = r.k[size_t(i)];
        V[size_t(c.n_past * row + i)] = v[size_t(i)];
    }
    const std::vector<double> KA = pair_sums(K, D);
    r.out.assign(q.size(), 0.0);
    r.out_err.assign(q.size(), 0.0);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < c.Hq; ++h) {
            const int64_t g = h / G, nk = c.n_past + t + 1;  // causal: cache positions 0 .. n_past + t
            const size_t qo = size_t((t * c.Hq + h) * D);
            std::vector<double> s(static_cast<size_t>(nk));
            double m = -INFINITY, S = 0.0;
            for (int64_t j = 0; j < nk; ++j) {
                const size_t ko = size_t(j * row + g * D);
                double dot = 0.0, P = 0.0;
                for (int64_t d = 0; d < D; ++d) {
                    dot += qr[qo + d] * K[ko + d];
                    P += qA[qo + d] * KA[ko + d];
                }
                s[size_t(j)] = dot / std::sqrt(double(D));
                m = std::max(m, s[size_t(j)]);
                S = std::max(S, gamma_n(double(3 * D + 28)) * P / std::sqrt(double(D)) + 3 * kU * std::fabs(s[size_t(j)]));
            }
            double l = 0.0;
            for (double& e : s) l += (e = std::exp(e - m));
            const double rel = std::expm1(2 * S) + gamma_n(double(2 * nk + 24));
            for (int64_t d = 0; d < D; ++d) {
                double acc = 0.0, mag = 0.0;
                for (int64_t j = 0; j < nk; ++j) {
                    acc += s[size_t(j)] * V[size_t(j * row + g * D + d)];
                    mag += s[size_t(j)] * std::fabs(V[size_t(j * row + g * D + d)]);
                }
                r.out[qo + d] = acc / l;
                r.out_err[qo + d] = rel * mag / l;
            }
        }
    return r;
}

// The fused prologue + attention against the double reference (outputs and cache rows poisoned with NaN before each
// call: an unwritten element, or a key read past the causal limit, fails), n_past given directly and through a
// tensor; then it checks the arguments of both ops it stands for (messages name the fused op).
TEST_F(AttentionOpsCApi, QkNormRopeAttentionMatchesDoubleReference) {
    Rng rng(20240611);
    const float nan = std::numeric_limits<float>::quiet_NaN(), eps = 1e-6f, theta = 1e6f;
    const TextAttentionCase cases[] = {
        {2, 4, 2, 8, 6, 3, {2, 1, 1}},          // the shapes of the argument checks below
        {5, 8, 2, 64, 16, 7, {12, 10, 10}},     // 4 query heads per KV head
        {1, 2, 2, 128, 40, 33, {24, 20, 20}},   // decoding, one query head per KV head
        {17, 4, 1, 128, 20, 0, {24, 20, 20}},   // prefill into an empty cache, rows 17 .. 19 left alone
    };
    size_t case_index = 0;
    for (const TextAttentionCase& c : cases)
        for (bool n_past_tensor : {false, true}) {
            const int64_t T = c.T, Hq = c.Hq, Hkv = c.Hkv, D = c.D, row = Hkv * D;
            const bool bf16_q_norm = case_index++ % 2 == 0;
            SCOPED_TRACE("T=" + std::to_string(T) + " Hq=" + std::to_string(Hq) + " Hkv=" + std::to_string(Hkv) +
                         " D=" + std::to_string(D) + " n_past=" + std::to_string(c.n_past) +
                         (n_past_tensor ? " (tensor)" : "") + (bf16_q_norm ? " q_norm bf16" : ""));
            // Every third head row at 1e-3 scale: mean(x^2) ~ 1.3e-6 there, so eps (1e-6) changes its scale by 30%.
            std::vector<float> qv = rng.vec(size_t(T * Hq * D), -2, 2), kv = rng.vec(size_t(T * row), -2, 2);
            for (size_t i = 0; i < qv.size(); ++i)
                if ((i / size_t(D)) % 3 == 2) qv[i] *= 1e-3f;
            for (size_t i = 0; i < kv.size(); ++i)
                if ((i / size_t(D)) % 3 == 1) kv[i] *= 1e-3f;
            const std::vector<float> vv = rng.vec(size_t(T * row), -1, 1);
            const std::vector<float> prior_k = rng.vec(size_t(c.n_past * row), -1.5f, 1.5f);
            const std::vector<float> prior_v = rng.vec(size_t(c.n_past * row), -1, 1);
            std::vector<int32_t> posv(size_t(3 * T));
            for (int32_t& p : posv) p = rng.integer(0, 5000);  // three streams differ
            qwen3vl_tensor* qn = make(bf16_q_norm ? QWEN3VL_DTYPE_BF16 : QWEN3VL_DTYPE_F32, {D});
            const std::vector<float> qn_in = rng.vec(size_t(D), 0.5f, 1.5f);
            ASSERT_EQ(qwen3vl_tensor_write(qn, QWEN3VL_DTYPE_F32, qn_in.data(), size_t(D) * 4), QWEN3VL_STATUS_OK);
            qwen3vl_tensor* kn = f32({D}, rng.vec(size_t(D), 0.5f, 1.5f));
            std::vector<float> cache_k(size_t(c.cap * row), nan), cache_v(size_t(c.cap * row), nan);
            std::copy(prior_k.begin(), prior_k.end(), cache_k.begin());
            std::copy(prior_v.begin(), prior_v.end(), cache_v.begin());
            qwen3vl_tensor *q = f32({T, Hq, D}, qv), *k = f32({T, Hkv, D}, kv), *v = f32({T, Hkv, D}, vv);
            qwen3vl_tensor *kc = f32({c.cap, Hkv, D}, cache_k), *vc = f32({c.cap, Hkv, D}, cache_v);
            qwen3vl_tensor* out = f32({T, Hq, D}, nan);
            ASSERT_EQ(op::qk_norm_rope_attention(out, q, k, v, qn, kn, eps, i32({3, T}, posv), theta, c.section,
                                                        kc, vc, n_past_tensor ? 0 : c.n_past,
                                                        n_past_tensor ? i32({1}, {int32_t(c.n_past)}) : nullptr),
                      QWEN3VL_STATUS_OK)
                << qwen3vl_last_error();
            const TextAttentionRef want = text_attention_ref(c, qv, kv, vv, read(qn), read(kn),
                                                             eps, posv, theta, prior_k, prior_v);
            const std::vector<float> got = read(out);
            for (size_t i = 0; i < got.size(); ++i)
                ASSERT_TRUE(std::fabs(got[i] - want.out[i]) <= want.out_err[i])
                    << "out element " << i << ": got " << got[i] << ", want " << want.out[i] << " (bound "
                    << want.out_err[i] << ")";
            EXPECT_LE(nmse(got, want.out), 1e-10);
            // Rows before n_past are left alone, rows n_past .. n_past + T - 1 hold the reference k and v exactly as
            // given (an f32 cache), the rows after stay NaN.
            const std::vector<float> kc_got = read(kc), vc_got = read(vc);
            for (int64_t i = 0; i < c.cap * row; ++i) {
                const int64_t j = i / row, s = i - c.n_past * row;
                const size_t u = size_t(i);
                if (j < c.n_past) {
                    ASSERT_EQ(kc_got[u], prior_k[u]) << "k_cache element " << i;
                    ASSERT_EQ(vc_got[u], prior_v[u]) << "v_cache element " << i;
                } else if (j < c.n_past + T) {
                    ASSERT_TRUE(std::fabs(kc_got[u] - want.k[size_t(s)]) <= want.k_err[size_t(s)])
                        << "k_cache element " << i << ": got " << kc_got[u] << ", want " << want.k[size_t(s)]
                        << " (bound " << want.k_err[size_t(s)] << ")";
                    ASSERT_EQ(vc_got[u], vv[size_t(s)]) << "v_cache element " << i;
                } else {
                    ASSERT_TRUE(std::isnan(kc_got[u]) && std::isnan(vc_got[u])) << "cache element " << i;
                }
            }
        }

    // Argument checks, on the first case's shapes.
    const int64_t T = 2, Hq = 4, Hkv = 2, D = 8, cap = 6;
    const int64_t sec[3] = {2, 1, 1};
    qwen3vl_tensor *pos = i32({3, T}, {5, 6, 2, 2, 3, 4}), *w = f32({D});
    qwen3vl_tensor *q = f32({T, Hq, D}), *k = f32({T, Hkv, D}), *v = f32({T, Hkv, D});
    qwen3vl_tensor *kc = f32({cap, Hkv, D}), *vc = f32({cap, Hkv, D}), *out = f32({T, Hq, D}, 0.0f);
    EXPECT_INVALID(op::qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0,
                                                     i32({1}, {5})),
                   "qwen3vl_op_qk_norm_rope_attention: n_past_tensor holds 5, outside 0 .. 4");
    EXPECT_INVALID(op::qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 5, nullptr),
                   "qwen3vl_op_qk_norm_rope_attention: n_past 5 + 2 tokens does not fit the cache's 6 rows");
    EXPECT_INVALID(op::qk_norm_rope_attention(f32({T, Hq, 4}), q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0,
                                                     nullptr),
                   "out has shape [2, 4, 4], expected [2, 4, 8]");
    EXPECT_INVALID(op::qk_norm_rope_attention(q, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0, nullptr),
                   "out overlaps q");
    qwen3vl_tensor *q3 = f32({T, 3, D}), *o3 = f32({T, 3, D});
    EXPECT_INVALID(op::qk_norm_rope_attention(o3, q3, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0, nullptr),
                   "q has 3 heads, not a multiple of k's 2");
    // n_past, n_past_tensor and n_past_bound: one meaning each.
    EXPECT_INVALID(op::qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 1, i32({1}, {1})),
                   "qwen3vl_op_qk_norm_rope_attention: n_past 1 is given with n_past_tensor");
    EXPECT_INVALID(op::qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 1, nullptr, 3),
                   "qwen3vl_op_qk_norm_rope_attention: n_past_bound 3 is given without n_past_tensor");
    EXPECT_INVALID(op::qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0, i32({1}, {1}), 5),
                   "n_past_bound 5 + 2 tokens exceed the cache");
    // The parameter struct itself: its size, its reserved field, a NULL pointer.
    qwen3vl_qk_norm_rope_attention_params p =
        op::rope_attention_params(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0, nullptr, 0);
    EXPECT_EQ(qwen3vl_op_qk_norm_rope_attention(&p), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    p.reserved = 1;
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(&p), "reserved must be 0");
    p.reserved = 0;
    p.struct_size -= 8;
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(&p), "qwen3vl_qk_norm_rope_attention_params.struct_size is");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(nullptr), "qwen3vl_qk_norm_rope_attention_params pointer is NULL");
}

// Q8 KV caches (QWEN3VL_DTYPE_Q8 [capacity, Hkv, D]): the fused op writes the new rows as exactly the blocks
// quantize_kv_q8 makes of the rows an f32 cache receives (core/quant.h), leaves the earlier rows alone and the later
// ones NaN; its attention reads the cache as exactly its dequantized values (the same bits as qwen3vl_op_attention over
// an f32 cache holding them, with the q the prologue rotates). A NaN in k reaches the output as NaN (a NaN block
// scale), never an error or a crash. Bad caches are refused by name.
TEST_F(AttentionOpsCApi, Q8CachesHoldTheQuantizedRowsAndReadAsTheirValues) {
    Rng rng(20261206);
    SCOPED_TRACE(rng.trace());
    const float eps = 1e-6f, theta = 5e6f, nan = std::numeric_limits<float>::quiet_NaN();
    struct Case {
        int64_t T, Hq, Hkv, D, cap, n_past;
        int64_t section[3];
    };
    const Case cases[] = {{1, 4, 2, 128, 40, 33, {24, 20, 20}},  // decoding, G = 2
                          {17, 8, 2, 64, 30, 5, {12, 10, 10}},   // prefill, G = 4
                          {3, 2, 1, 32, 8, 0, {6, 5, 5}}};       // one block per head row, an empty cache
    for (const Case& c : cases) {
        const int64_t T = c.T, D = c.D, row = c.Hkv * D;
        SCOPED_TRACE("T=" + std::to_string(T) + " D=" + std::to_string(D) + " n_past=" + std::to_string(c.n_past));
        const std::vector<float> qv = rng.vec(size_t(T * c.Hq * D), -2, 2), kv = rng.vec(size_t(T * row), -2, 2),
                                 vv = rng.vec(size_t(T * row), -1, 1);
        std::vector<float> prior_k(size_t(c.cap * row), nan), prior_v(size_t(c.cap * row), nan);
        for (int64_t i = 0; i < c.n_past * row; ++i) {
            prior_k[size_t(i)] = rng.uniform(-1.5f, 1.5f);
            prior_v[size_t(i)] = rng.uniform(-1, 1);
        }
        std::vector<int32_t> posv(size_t(3 * T));
        for (int32_t& p : posv) p = rng.integer(0, 5000);
        qwen3vl_tensor* pos = i32({3, T}, posv);
        qwen3vl_tensor *qn = f32({D}, rng.vec(size_t(D), 0.5f, 1.5f)), *kn = f32({D}, rng.vec(size_t(D), 0.5f, 1.5f));
        const std::vector<uint8_t> planes_k = kv_q8_planes(prior_k), planes_v = kv_q8_planes(prior_v);
        // The f32 twin: caches holding the Q8 caches' values; the cache-writing half alone gives the rotated q and
        // the new f32 rows.
        std::vector<float> deq_k(prior_k.size()), deq_v(prior_v.size());
        dequantize_q8(reinterpret_cast<const int8_t*>(planes_k.data()),
                      reinterpret_cast<const uint16_t*>(planes_k.data() + prior_k.size()), int64_t(prior_k.size()),
                      deq_k.data());
        dequantize_q8(reinterpret_cast<const int8_t*>(planes_v.data()),
                      reinterpret_cast<const uint16_t*>(planes_v.data() + prior_v.size()), int64_t(prior_v.size()),
                      deq_v.data());
        qwen3vl_tensor *q1 = f32({T, c.Hq, D}, qv), *k1 = f32({T, c.Hkv, D}, kv), *v = f32({T, c.Hkv, D}, vv);
        qwen3vl_tensor *fk = f32({c.cap, c.Hkv, D}, deq_k), *fv = f32({c.cap, c.Hkv, D}, deq_v);
        ASSERT_EQ(QWEN3VL_STATUS_OK, op::qk_norm_rope_kv(q1, k1, v, qn, kn, eps, pos, theta, c.section, fk, fv,
                                                         c.n_past))
            << qwen3vl_last_error();
        // The fused op into Q8 caches.
        qwen3vl_tensor *kc = make(QWEN3VL_DTYPE_Q8, {c.cap, c.Hkv, D}), *vc = make(QWEN3VL_DTYPE_Q8, {c.cap, c.Hkv, D});
        write_values(kc, prior_k);
        write_values(vc, prior_v);
        qwen3vl_tensor *q2 = f32({T, c.Hq, D}, qv), *k2 = f32({T, c.Hkv, D}, kv), *out = f32({T, c.Hq, D}, nan);
        ASSERT_EQ(QWEN3VL_STATUS_OK, op::qk_norm_rope_attention(out, q2, k2, v, qn, kn, eps, pos, theta, c.section,
                                                                kc, vc, c.n_past))
            << qwen3vl_last_error();
        // Rows n_past .. n_past + T - 1: the blocks of the f32 twin's new rows; the others as written before.
        for (auto [cache, twin, prior] : {std::tuple{kc, fk, &planes_k}, std::tuple{vc, fv, &planes_v}}) {
            const std::vector<float> twin_rows = read(twin);
            std::vector<float> want_f = twin_rows;
            for (int64_t i = 0; i < c.cap * row; ++i)
                if (i / row < c.n_past || i / row >= c.n_past + T) want_f[size_t(i)] = nan;
            std::vector<uint8_t> want = kv_q8_planes(want_f);
            const size_t n = size_t(c.cap * row);
            for (size_t i = 0; i < n; ++i)  // the untouched rows: the planes written before the op
                if (int64_t(i) / row < c.n_past || int64_t(i) / row >= c.n_past + T) {
                    want[i] = (*prior)[i];
                    if (i % 32 == 0) std::memcpy(&want[n + i / 16], &(*prior)[n + i / 16], 2);
                }
            std::vector<uint8_t> got(want.size());
            ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(cache, QWEN3VL_DTYPE_Q8, got.data(), got.size()))
                << qwen3vl_last_error();
            EXPECT_TRUE(got == want) << (cache == kc ? "k_cache" : "v_cache") << " planes";
        }
        // The attention: qwen3vl_op_attention over f32 caches holding the Q8 caches' values, with the rotated q.
        qwen3vl_tensor *ck = f32({c.cap, c.Hkv, D}, read(kc)), *cv = f32({c.cap, c.Hkv, D}, read(vc));
        qwen3vl_tensor* same = f32({T, c.Hq, D}, nan);
        ASSERT_EQ(QWEN3VL_STATUS_OK, op::attention(same, q1, ck, cv, c.n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr,
                                                   nullptr))
            << qwen3vl_last_error();
        const std::vector<float> got = read(out), want = read(same);
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << "output";
        // And the plain op over the Q8 caches themselves, the same bits again.
        qwen3vl_tensor* direct = f32({T, c.Hq, D}, nan);
        ASSERT_EQ(QWEN3VL_STATUS_OK, op::attention(direct, q1, kc, vc, c.n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr,
                                                   nullptr))
            << qwen3vl_last_error();
        const std::vector<float> got2 = read(direct);
        EXPECT_EQ(0, std::memcmp(got2.data(), want.data(), got2.size() * sizeof(float))) << "attention over q8";
    }

    // A NaN in k: its block gets a NaN scale, the output rows that see it are NaN; the call itself succeeds.
    {
        const int64_t D = 32;
        qwen3vl_tensor* pos = i32({3, 1}, {1, 1, 1});
        qwen3vl_tensor *qn = f32({D}, 1.0f), *kn = f32({D}, 1.0f);
        std::vector<float> kv = rng.vec(size_t(D), -1, 1);
        kv[7] = nan;
        qwen3vl_tensor *q = f32({1, 1, D}, rng.vec(size_t(D), -1, 1)), *k = f32({1, 1, D}, kv), *v = f32({1, 1, D});
        qwen3vl_tensor *kc = make(QWEN3VL_DTYPE_Q8, {4, 1, D}), *vc = make(QWEN3VL_DTYPE_Q8, {4, 1, D});
        write_values(kc, std::vector<float>(size_t(4 * D), nan));
        write_values(vc, std::vector<float>(size_t(4 * D), nan));
        qwen3vl_tensor* out = f32({1, 1, D}, 0.0f);
        const int64_t sec[3] = {6, 5, 5};
        ASSERT_EQ(QWEN3VL_STATUS_OK,
                  op::qk_norm_rope_attention(out, q, k, v, qn, kn, eps, pos, theta, sec, kc, vc, 0))
            << qwen3vl_last_error();
        for (float x : read(out)) EXPECT_TRUE(std::isnan(x));
    }

    // Refusals: a Q4 cache, mixed cache dtypes, a Q8 cache whose head dim is not whole blocks, a 4-D Q8 tensor.
    const int64_t D = 32, sec[3] = {6, 5, 5};
    qwen3vl_tensor *q = f32({1, 2, D}), *k = f32({1, 1, D}), *v = f32({1, 1, D}), *w = f32({D}, 1.0f);
    qwen3vl_tensor *pos = i32({3, 1}, {0, 0, 0}), *out = f32({1, 2, D});
    qwen3vl_tensor *q8 = make(QWEN3VL_DTYPE_Q8, {4, 1, D}), *bf = make(QWEN3VL_DTYPE_BF16, {4, 1, D});
    EXPECT_INVALID(op::attention(out, q, q8, bf, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "v_cache must be q8, got bf16");
    EXPECT_INVALID(op::qk_norm_rope_attention(out, q, k, v, w, w, eps, pos, theta, sec, bf, q8, 0),
                   "v_cache must be bf16, got q8");
    qwen3vl_tensor* q4 = make(QWEN3VL_DTYPE_Q4, {4, 256});
    EXPECT_INVALID(op::attention(out, q, q4, q4, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "k_cache must be f32 or f16 or bf16 or q8, got q4");
    qwen3vl_tensor* bad = nullptr;
    const int64_t odd[3] = {4, 1, 48}, deep[4] = {2, 2, 1, 32};
    EXPECT_INVALID(qwen3vl_tensor_create(backend.get(), QWEN3VL_DTYPE_Q8, 3, odd, &bad), "D = 48 is not a multiple");
    EXPECT_INVALID(qwen3vl_tensor_create(backend.get(), QWEN3VL_DTYPE_Q8, 4, deep, &bad),
                   "q8 tensors are 2-D weight matrices [N, K] or 3-D KV caches [capacity, Hkv, D], got 4");
    EXPECT_INVALID(qwen3vl_tensor_create(backend.get(), QWEN3VL_DTYPE_Q4, 3, deep, &bad),
                   "q4 tensors are 2-D weight matrices [N, K], got 3");
    EXPECT_EQ(bad, nullptr);
}

TEST_F(AttentionOpsCApi, ParamStructsAreChecked) {
    // Every *_params op refuses a struct of another size (a caller built against another header) and a NULL pointer.
    qwen3vl_attention_params a = qwen3vl_attention_default_params();
    a.struct_size += 4;
    EXPECT_INVALID(qwen3vl_op_attention(&a), "qwen3vl_attention_params.struct_size is");
    EXPECT_INVALID(qwen3vl_op_attention(nullptr), "qwen3vl_attention_params pointer is NULL");
    qwen3vl_norm_linear_params n = qwen3vl_norm_linear_default_params();
    n.struct_size = 0;
    EXPECT_INVALID(qwen3vl_op_norm_linear(&n), "qwen3vl_norm_linear_params.struct_size is 0");
    qwen3vl_layer_norm_linear_params l = qwen3vl_layer_norm_linear_default_params();
    l.struct_size = 1;
    EXPECT_INVALID(qwen3vl_op_layer_norm_linear(&l), "qwen3vl_layer_norm_linear_params.struct_size is 1");
    qwen3vl_mlp_gelu_params m = qwen3vl_mlp_gelu_default_params();
    m.reserved = 2;
    EXPECT_INVALID(qwen3vl_op_mlp_gelu(&m), "qwen3vl_op_mlp_gelu: reserved must be 0");
    EXPECT_INVALID(qwen3vl_op_mlp_gelu(nullptr), "qwen3vl_mlp_gelu_params pointer is NULL");
    // The documented defaults.
    const qwen3vl_qk_norm_rope_attention_params r = qwen3vl_qk_norm_rope_attention_default_params();
    EXPECT_EQ(r.struct_size, sizeof r);
    EXPECT_EQ(r.eps, 1e-6f);
    EXPECT_EQ(r.theta, 5000000.0f);
    EXPECT_EQ(r.mrope_section[0], 24);
    EXPECT_EQ(r.mrope_section[1], 20);
    EXPECT_EQ(r.mrope_section[2], 20);
    EXPECT_EQ(r.n_past_tensor, nullptr);
    EXPECT_EQ(qwen3vl_attention_default_params().mask, QWEN3VL_ATTENTION_CAUSAL);
    EXPECT_EQ(qwen3vl_mlp_gelu_default_params().tanh_approximation, 1);
    EXPECT_EQ(qwen3vl_norm_linear_default_params().eps, 1e-6f);
}

TEST_F(AttentionOpsCApi, NPastAndItsBoundKeepOneMeaningEach) {
    const int64_t T = 1, H = 2, D = 8, cap = 4;
    qwen3vl_tensor *q = f32({T, H, D}), *kc = f32({cap, 1, D}), *vc = f32({cap, 1, D}), *out = f32({T, H, D}, 0.0f);
    EXPECT_INVALID(op::attention(out, q, kc, vc, 2, QWEN3VL_ATTENTION_CAUSAL, nullptr, i32({1}, {2})),
                   "qwen3vl_op_attention: n_past 2 is given with n_past_tensor");
    EXPECT_INVALID(op::attention(out, q, kc, vc, 2, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr, 2),
                   "qwen3vl_op_attention: n_past_bound 2 is given without n_past_tensor");
    qwen3vl_tensor* qkv = f32({2, 3, H, D});
    EXPECT_INVALID(op::attention(f32({2, H, D}), qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({2}, {0, 2}),
                                 nullptr, 1),
                   "n_past_bound must be 0 with QWEN3VL_ATTENTION_SEGMENTS");
    EXPECT_EQ(op::attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, i32({1}, {3}), 3), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
}

TEST_F(AttentionOpsCApi, OpsRunEndToEnd) {
    // One key: attention returns its value whatever the query.
    qwen3vl_tensor* q = f32({1, 2, 4}, 0.3f);
    qwen3vl_tensor* kc = f32({3, 1, 4}, 0.7f);
    qwen3vl_tensor* vc = f32({3, 1, 4}, {1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9});
    qwen3vl_tensor* ao = f32({1, 2, 4}, kNaN);
    ASSERT_EQ(op::attention(ao, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_EQ(read(ao), (std::vector<float>{1, 2, 3, 4, 1, 2, 3, 4}));
    // Segments of one token each: every query sees only its own value.
    qwen3vl_tensor* qkv = f32({2, 3, 1, 4}, {0, 0, 0, 0, 1, 1, 1, 1, 5, 6, 7, 8, 0, 0, 0, 0, 1, 1, 1, 1, -1, -2, -3, -4});
    qwen3vl_tensor* so = f32({2, 1, 4}, kNaN);
    ASSERT_EQ(op::attention(so, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({3}, {0, 1, 2}), nullptr),
              QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_EQ(read(so), (std::vector<float>{5, 6, 7, 8, -1, -2, -3, -4}));
}

// ---- CUDA against the CPU ---------------------------------------------------------------------------------------

// Attention on the default backend and on one created with cuda_fp32_math = 1. On the default backend (sm_80+) every
// call but the decode-shaped ones (T * Hq / Hkv <= 8, exact fp32) takes the tensor-core kernel, which rounds q, k, v
// and the probabilities p to bf16 (unit roundoff 2^-9; the rounding errors are independent, uniform, about
// 2^-9 / sqrt(3) rms relative). An output row is a p-weighted mean of v rows, and the perturbations of v and p
// average exactly as the signal does, so each contributes a relative error of ~1e-3; those of q and k perturb the
// scores by ~2^-9 |s| (|s| ~0.3 rms here, ~1.3 with q in [-4, 4]) and p by as much, relatively. Expected relative
// L2 error: a few 1e-3 (NMSE ~1e-5; an emulation of the kernel's arithmetic gives 4e-3 on the worst of 16 rows with
// q in [-3, 3]). Thresholds: NMSE <= 1e-4 over the output (relative L2 1e-2) and relative L2 <= 3e-2 on every row
// (one head of one token: a wrong mask, a lost chunk or a stale row is off by O(1) there, even when the NMSE hides
// it). With cuda_fp32_math every kernel is exact fp32 and the threshold stays NMSE 1e-9 (tile order, split-K merge).
// Cache rows past n_past + T are NaN: a kernel that lets any of them into a sum fails.
class CudaAttentionOps : public CudaOpsTest {
protected:
    bool fp32_ = false;

    struct Causal {
        int64_t T, n_past, Hq, Hkv, D;
        qwen3vl_dtype cache;
        float q_range;  // q uniform in [-q_range, q_range]: > 1 sharpens the softmax
    };

    std::string describe(const Causal& k) const {
        return " T=" + std::to_string(k.T) + " n_past=" + std::to_string(k.n_past) + " Hq=" + std::to_string(k.Hq) +
               " Hkv=" + std::to_string(k.Hkv) + " D=" + std::to_string(k.D) + " cache " + dtype_name(k.cache) +
               (k.q_range != 1.0f ? " q range " + std::to_string(k.q_range) : std::string()) +
               (fp32_ ? " (fp32_math)" : "");
    }

    // Random cache rows, NaN from row `valid` on.
    std::vector<float> cache_values(int64_t rows, int64_t valid, int64_t width) {
        std::vector<float> v = random(size_t(rows * width));
        std::fill(v.begin() + valid * width, v.end(), std::numeric_limits<float>::quiet_NaN());
        return v;
    }

    // Frees the tensors created since `mark` (owned_.size() before a case), so long case lists stay small.
    void release_since(size_t mark) {
        while (owned_.size() > mark) {
            qwen3vl_tensor_free(owned_.back());
            owned_.pop_back();
        }
    }

    // GPU output against the reference (both [rows, D] flattened), with the thresholds above.
    void check_close(const std::vector<float>& ref, const std::vector<float>& got, int64_t D, const std::string& what) {
        ASSERT_EQ(ref.size(), got.size());
        const double e = nmse(got, ref);
        if (fp32_) {
            EXPECT_LE(e, 1e-9) << what << " (" << seed() << ")";
            return;
        }
        EXPECT_LE(e, 1e-4) << what << " (" << seed() << ")";
        double worst = 0.0;
        size_t worst_row = 0;
        for (size_t r = 0; r < ref.size() / size_t(D); ++r) {
            double num = 0.0, den = 0.0;
            for (size_t d = r * size_t(D); d < (r + 1) * size_t(D); ++d) {
                const double x = double(got[d]) - double(ref[d]);
                num += x * x;
                den += double(ref[d]) * ref[d];
            }
            const double rel = std::sqrt(num / den);
            if (!(rel <= worst)) {  // NaN included
                worst = rel;
                worst_row = r;
                if (std::isnan(rel)) break;
            }
        }
        EXPECT_LE(worst, 3e-2) << what << ": worst row " << worst_row << " (t * H + h) (" << seed() << ")";
    }

    void run_causal(const Causal& k) {
        const size_t mark = owned_.size();
        const int64_t cap = k.n_past + k.T + 5;
        Pair q = tensor(kF32, {k.T, k.Hq, k.D}, random(size_t(k.T * k.Hq * k.D), -k.q_range, k.q_range));
        Pair kc = tensor(k.cache, {cap, k.Hkv, k.D}, cache_values(cap, k.n_past + k.T, k.Hkv * k.D));
        Pair vc = tensor(k.cache, {cap, k.Hkv, k.D}, cache_values(cap, k.n_past + k.T, k.Hkv * k.D));
        Pair out = tensor(kF32, {k.T, k.Hq, k.D});
        both("attention", [&](bool c) {
            return op::attention(on(out, c), on(q, c), on(kc, c), on(vc, c), k.n_past, QWEN3VL_ATTENTION_CAUSAL,
                                        nullptr, nullptr);
        });
        check_close(read(out.cpu), read(out.gpu), k.D, "attention causal" + describe(k));
        release_since(mark);
    }

    void run_segments(int64_t H, int64_t D, const std::vector<int32_t>& segments, float q_range = 1.0f) {
        const size_t mark = owned_.size();
        const int64_t T = segments.back();
        std::string at = " T=" + std::to_string(T) + " H=" + std::to_string(H) + " D=" + std::to_string(D) +
                         " segments";
        for (int32_t s : segments) at += " " + std::to_string(s);
        if (q_range != 1.0f) at += " q range " + std::to_string(q_range);
        if (fp32_) at += " (fp32_math)";
        // q sharpened, k and v in [-1, 1]: the fused [T, 3, H, D] layout interleaves them per token.
        std::vector<float> v = random(size_t(T * 3 * H * D));
        for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < H * D; ++i) v[size_t(t * 3 * H * D + i)] *= q_range;
        Pair qkv = tensor(kF32, {T, 3, H, D}, v);
        Pair seg = ints({int64_t(segments.size())}, segments);
        Pair out = tensor(kF32, {T, H, D});
        both("attention", [&](bool c) {
            return op::attention(on(out, c), on(qkv, c), nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS,
                                        on(seg, c), nullptr);
        });
        check_close(read(out.cpu), read(out.gpu), D, "attention" + at);
        release_since(mark);
    }

    // n_past read from a device tensor (graph replay): one cache of fixed capacity, so one launch shape, and several
    // values; each must match the CPU with that n_past, and the GPU with n_past passed directly.
    void run_n_past_tensor(Causal k, const std::vector<int64_t>& values) {
        const size_t mark = owned_.size();
        const int64_t cap = k.n_past + k.T;  // k.n_past: the largest value
        Pair q = rand_tensor(kF32, {k.T, k.Hq, k.D});
        Pair kc = tensor(k.cache, {cap, k.Hkv, k.D}), vc = tensor(k.cache, {cap, k.Hkv, k.D});
        Pair out = tensor(kF32, {k.T, k.Hq, k.D}), direct = tensor(kF32, {k.T, k.Hq, k.D});
        Pair np = ints({1}, {0});
        for (int64_t n_past : values) {
            k.n_past = n_past;
            write_both(kc, cache_values(cap, n_past + k.T, k.Hkv * k.D));
            write_both(vc, cache_values(cap, n_past + k.T, k.Hkv * k.D));
            const int32_t v32 = static_cast<int32_t>(n_past);
            check(qwen3vl_tensor_write(np.gpu, QWEN3VL_DTYPE_I32, &v32, 4), "tensor_write");
            check(op::attention(out.cpu, q.cpu, kc.cpu, vc.cpu, n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr,
                                       nullptr),
                  "attention on the CPU");
            check(op::attention(out.gpu, q.gpu, kc.gpu, vc.gpu, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np.gpu),
                  "attention on CUDA, n_past_tensor");
            check(op::attention(direct.gpu, q.gpu, kc.gpu, vc.gpu, n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr,
                                       nullptr),
                  "attention on CUDA, n_past");
            const std::vector<float> ref = read(out.cpu), got = read(out.gpu), same = read(direct.gpu);
            check_close(ref, got, k.D, "attention n_past_tensor" + describe(k) + " capacity " + std::to_string(cap));
            check_close(same, got, k.D, "attention n_past_tensor vs n_past" + describe(k));
        }
        release_since(mark);
    }

    // qwen3vl_op_qk_norm_rope_attention (the prologue fused into the decoding kernel when T * G <= 8): against the
    // two ops it fuses on the GPU, bit for bit (the same arithmetic; the new k / v rows come from shared memory
    // instead of the cache), and against the CPU with the thresholds above; the cache rows it writes against the
    // CPU's (as in CudaRopeOps.QkNormRopeKv). Cache rows from n_past on start as NaN: the op must write its T rows,
    // and a row it reads before writing would poison the output.
    void run_rope_attention(const Causal& k, bool n_past_on_device) {
        const size_t mark = owned_.size();
        const int64_t cap = k.n_past + k.T + 5;
        const int64_t section[3] = {k.D == 128 ? 24 : 12, k.D == 128 ? 20 : 10, k.D == 128 ? 20 : 10};
        const std::string at = describe(k) + (n_past_on_device ? " n_past_tensor" : "");
        const std::vector<float> qv = random(size_t(k.T * k.Hq * k.D), -k.q_range, k.q_range);
        const std::vector<float> kv = random(size_t(k.T * k.Hkv * k.D)), vv = random(size_t(k.T * k.Hkv * k.D));
        const std::vector<float> kcv = cache_values(cap, k.n_past, k.Hkv * k.D),
                                 vcv = cache_values(cap, k.n_past, k.Hkv * k.D);
        std::vector<int32_t> pos(size_t(3 * k.T));
        for (int32_t& p : pos) p = randint(0, 4095);
        Pair tp = ints({3, k.T}, pos), np = ints({1}, {int32_t(k.n_past)});
        Pair qn = rand_tensor(kBF16, {k.D}), kn = rand_tensor(kBF16, {k.D});
        Pair v = tensor(kF32, {k.T, k.Hkv, k.D}, vv);
        // The fused op on both backends, the two ops on the GPU: each on its own copies of q, k and the caches.
        Pair q = tensor(kF32, {k.T, k.Hq, k.D}, qv), kk = tensor(kF32, {k.T, k.Hkv, k.D}, kv);
        Pair kc = tensor(k.cache, {cap, k.Hkv, k.D}, kcv), vc = tensor(k.cache, {cap, k.Hkv, k.D}, vcv);
        Pair out = tensor(kF32, {k.T, k.Hq, k.D});
        Pair q2 = tensor(kF32, {k.T, k.Hq, k.D}, qv), k2 = tensor(kF32, {k.T, k.Hkv, k.D}, kv);
        Pair kc2 = tensor(k.cache, {cap, k.Hkv, k.D}, kcv), vc2 = tensor(k.cache, {cap, k.Hkv, k.D}, vcv);
        Pair out2 = tensor(kF32, {k.T, k.Hq, k.D});
        const int64_t n_arg = n_past_on_device ? 0 : k.n_past;  // with the tensor: 0 = bound capacity - T
        both("qk_norm_rope_attention", [&](bool c) {
            return op::qk_norm_rope_attention(on(out, c), on(q, c), on(kk, c), on(v, c), on(qn, c), on(kn, c),
                                                     1e-6f, on(tp, c), 5000000.0f, section, on(kc, c), on(vc, c), n_arg,
                                                     n_past_on_device ? on(np, c) : nullptr);
        });
        const qwen3vl_tensor* npt = n_past_on_device ? np.gpu : nullptr;
        check(op::qk_norm_rope_kv(q2.gpu, k2.gpu, v.gpu, qn.gpu, kn.gpu, 1e-6f, tp.gpu, 5000000.0f, section,
                                         kc2.gpu, vc2.gpu, n_arg, npt),
              "qk_norm_rope_kv on CUDA");
        check(op::attention(out2.gpu, q2.gpu, kc2.gpu, vc2.gpu, n_arg, QWEN3VL_ATTENTION_CAUSAL, nullptr, npt),
              "attention on CUDA");
        const auto bits_equal = [](const std::vector<float>& a, const std::vector<float>& b) {
            return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
        };
        EXPECT_TRUE(bits_equal(read(out.gpu), read(out2.gpu))) << "fused vs the two ops, output" << at << " (" << seed() << ")";
        EXPECT_TRUE(bits_equal(read(kc.gpu), read(kc2.gpu))) << "fused vs the two ops, k_cache" << at << " (" << seed() << ")";
        EXPECT_TRUE(bits_equal(read(vc.gpu), read(vc2.gpu))) << "fused vs the two ops, v_cache" << at << " (" << seed() << ")";
        check_close(read(out.cpu), read(out.gpu), k.D, "qk_norm_rope_attention" + at);
        // The rows written (n_past .. n_past + T - 1) against the CPU's; the rows after them must still be NaN.
        const size_t row = size_t(k.Hkv * k.D), first = size_t(k.n_past) * row, end = size_t(k.n_past + k.T) * row;
        for (const Pair* c : {&kc, &vc}) {
            const std::vector<float> ref = read(c->cpu), got = read(c->gpu);
            const std::vector<float> ref_rows(ref.begin() + first, ref.begin() + end),
                got_rows(got.begin() + first, got.begin() + end);
            // Q8: the CPU's and the GPU's rows before quantization differ in their last bits (norm and rotation
            // rounded apart), which can move an element across a rounding boundary: one step d = max|x| / 127 of
            // its block. The bound allows (1 / 127)^2, i.e. about such a step on every element.
            EXPECT_LE(nmse(got_rows, ref_rows), k.cache == kF32 ? 1e-10 : k.cache == QWEN3VL_DTYPE_Q8 ? 6.2e-5 : 1e-8)
                << (c == &kc ? "k_cache" : "v_cache") << at << " (" << seed() << ")";
            EXPECT_TRUE(std::isnan(got[end])) << "row n_past + T written" << at;
        }
        release_since(mark);
    }

    void rope_attention_cases() {
        // Decoding shapes (fused: T * G <= 8, one chunk or split-K, the new keys at a chunk start or inside), a
        // prefill shape (the two kernels), f16 / bf16 / f32 caches, groups of 2 and 4, n_past on the device.
        const Causal cases[] = {{1, 0, 16, 8, 128, kBF16, 1.0f},   {1, 37, 16, 8, 128, kBF16, 1.0f},
                                {1, 511, 16, 8, 128, kBF16, 4.0f}, {1, 1000, 16, 8, 128, kF32, 1.0f},
                                {4, 300, 16, 8, 128, kBF16, 1.0f}, {2, 63, 32, 8, 128, kF16, 1.0f},
                                {3, 64, 8, 8, 64, kF32, 1.0f},     {65, 100, 16, 8, 128, kBF16, 1.0f},
                                // Q8 caches: fused decode (new rows quantized in the kernel), G = 4, T > 1, prefill
                                {1, 0, 16, 8, 128, QWEN3VL_DTYPE_Q8, 1.0f},   {1, 511, 16, 8, 128, QWEN3VL_DTYPE_Q8, 4.0f},
                                {1, 1000, 32, 8, 128, QWEN3VL_DTYPE_Q8, 1.0f}, {4, 300, 16, 8, 128, QWEN3VL_DTYPE_Q8, 1.0f},
                                {3, 64, 8, 8, 64, QWEN3VL_DTYPE_Q8, 1.0f},     {65, 100, 16, 8, 128, QWEN3VL_DTYPE_Q8, 1.0f}};
        for (const Causal& k : cases)
            for (bool dev : {false, true}) {
                run_rope_attention(k, dev);
                if (HasFailure()) return;
            }
    }

    void causal_cases() {
        struct Heads {
            int64_t Hq, Hkv;
        };
        // Every path: decode (T * G <= 8), tensor cores with and without split-K (n_past 1000), partial and
        // straddling tiles (T 64, 65, 130, 300), GQA groups of 2 and 1.
        for (int64_t T : {1, 2, 7, 64, 65, 130, 300})
            for (int64_t n_past : {0, 37, 1000})
                for (Heads h : {Heads{16, 8}, Heads{4, 4}})
                    for (int64_t D : {128, 64})
                        for (qwen3vl_dtype cache : {kF32, kBF16, QWEN3VL_DTYPE_Q8}) {
                            run_causal({T, n_past, h.Hq, h.Hkv, D, cache, 1.0f});
                            if (HasFailure()) return;
                        }
        // Other head dims (80/96/112 on tensor cores, 40 on the fp32 fallback), f16 caches, groups of 3, 4 and 16,
        // sharpened softmax.
        const Causal more[] = {{7, 33, 8, 2, 64, kF16, 1.0f},       {17, 100, 6, 3, 64, kBF16, 1.0f},
                               {2, 63, 2, 1, 128, kF16, 1.0f},      {3, 5, 2, 2, 40, kF32, 1.0f},
                               {5, 700, 4, 2, 64, kF16, 1.0f},      {70, 10, 8, 2, 80, kF32, 1.0f},
                               {33, 0, 4, 1, 96, kBF16, 1.0f},      {130, 500, 4, 4, 112, kF16, 1.0f},
                               {1, 300, 16, 1, 128, kF32, 1.0f},    {40, 2000, 16, 8, 128, kF32, 1.0f},
                               {300, 37, 16, 8, 128, kF32, 4.0f},   {1, 1000, 16, 8, 128, kBF16, 4.0f},
                               {65, 1000, 16, 8, 128, kBF16, 4.0f}, {129, 0, 4, 4, 64, kF32, 4.0f},
                               // head dims 72 / 88 / 120 (Qwen3-VL-4B/8B vision: 72): zero-padded flash kernels,
                               // split-K included
                               {65, 100, 16, 8, 72, kBF16, 1.0f},   {5, 1200, 4, 2, 72, kF32, 1.0f},
                               {130, 37, 4, 4, 88, kF16, 1.0f},     {64, 0, 2, 1, 120, kF32, 1.0f},
                               // Q8 caches (decode kernel, and the prefill kernels over the dequantized rows): the
                               // 8B's group of 4, split-K, a sharpened softmax, head dim 96
                               {1, 2000, 32, 8, 128, QWEN3VL_DTYPE_Q8, 4.0f}, {40, 2000, 16, 8, 128, QWEN3VL_DTYPE_Q8, 1.0f},
                               {300, 37, 16, 8, 128, QWEN3VL_DTYPE_Q8, 4.0f}, {33, 0, 4, 1, 96, QWEN3VL_DTYPE_Q8, 1.0f},
                               {5, 700, 4, 2, 64, QWEN3VL_DTYPE_Q8, 1.0f}};
        for (const Causal& k : more) run_causal(k);
    }

    void segment_cases() {
        run_segments(16, 64, {0, 1, 64, 128, 193, 393, 1417});  // lengths 1, 63, 64, 65, 200, 1024
        run_segments(16, 64, {0, 1500});
        run_segments(16, 64, {0, 1, 64, 128, 193, 393, 1417}, 4.0f);
        run_segments(4, 64, {0, 16, 16, 50});  // an empty segment
        run_segments(2, 80, {0, 130});
        run_segments(3, 64, {0, 1});
        run_segments(16, 64, {0, 64, 128, 192, 200});
        run_segments(1, 64, {0, 100, 130});
        run_segments(4, 128, {0, 70, 300});
        run_segments(2, 96, {0, 5, 200, 201});
        run_segments(2, 112, {0, 129, 257});
        run_segments(16, 72, {0, 1, 64, 128, 193, 393, 1417});  // Qwen3-VL-4B/8B vision heads
        run_segments(4, 104, {0, 70, 300});
    }

    void n_past_tensor_cases() {
        run_n_past_tensor({1, 1100, 16, 8, 128, kF32, 1.0f}, {0, 37, 500, 1100});
        run_n_past_tensor({1, 1100, 16, 8, 128, kBF16, 1.0f}, {1100, 3, 64});
        run_n_past_tensor({2, 300, 16, 8, 64, kF32, 1.0f}, {0, 299, 300});
        run_n_past_tensor({7, 1100, 4, 4, 64, kF32, 1.0f}, {0, 37, 1100});
        run_n_past_tensor({65, 1100, 16, 8, 128, kF32, 1.0f}, {0, 37, 1000, 1100});
        run_n_past_tensor({300, 900, 16, 8, 64, kBF16, 1.0f}, {0, 900, 450});
        run_n_past_tensor({3, 200, 2, 2, 40, kF32, 1.0f}, {0, 150});
        // A long context (capacity-sized launch, chunks capped): short, middle and full conversations.
        run_n_past_tensor({1, 20000, 16, 8, 128, kBF16, 1.0f}, {0, 700, 12345, 20000});
        run_n_past_tensor({1, 1100, 32, 8, 128, QWEN3VL_DTYPE_Q8, 1.0f}, {1100, 3, 64});
        run_n_past_tensor({65, 1100, 16, 8, 128, QWEN3VL_DTYPE_Q8, 1.0f}, {0, 37, 1100});
    }
};

// The same cases with every kernel in fp32 (the decode kernel and the scalar fallback).
class CudaAttentionOpsFp32 : public CudaAttentionOps {
protected:
    void SetUp() override {
        CudaAttentionOps::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        qwen3vl_backend_free(gpu_);
        gpu_ = nullptr;
        qwen3vl_backend_params p = qwen3vl_backend_default_params();
        p.type = QWEN3VL_BACKEND_CUDA;
        p.device = 0;
        p.cuda_fp32_math = 1;
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_backend_create(&p, &gpu_)) << qwen3vl_last_error();
        fp32_ = true;
    }
};

TEST_F(CudaAttentionOps, Causal) { causal_cases(); }
TEST_F(CudaAttentionOps, Segments) { segment_cases(); }
TEST_F(CudaAttentionOps, NPastTensor) { n_past_tensor_cases(); }
TEST_F(CudaAttentionOps, QkNormRopeAttention) { rope_attention_cases(); }
TEST_F(CudaAttentionOpsFp32, Causal) { causal_cases(); }
TEST_F(CudaAttentionOpsFp32, Segments) { segment_cases(); }
TEST_F(CudaAttentionOpsFp32, NPastTensor) { n_past_tensor_cases(); }
TEST_F(CudaAttentionOpsFp32, QkNormRopeAttention) { rope_attention_cases(); }

TEST_F(CudaAttentionOps, BadSegmentsAreCaughtOnTheDevice) {
    // Vision attention reads its segment offsets on the device: a decreasing or out-of-range list is clamped (no read
    // outside q's rows) and reported by the next read, once.
    qwen3vl_tensor* qkv = rand_tensor(kF32, {5, 3, 2, 16}).gpu;
    qwen3vl_tensor* out = tensor(kF32, {5, 2, 16}).gpu;
    for (std::vector<int32_t> bad : {std::vector<int32_t>{0, 3, 2, 5}, std::vector<int32_t>{0, 9, 5},
                                     std::vector<int32_t>{1, 5}, std::vector<int32_t>{0, 4}}) {
        qwen3vl_tensor* seg = ints({int64_t(bad.size())}, bad).gpu;
        ASSERT_EQ(QWEN3VL_STATUS_OK, op::attention(out, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, seg,
                                                          nullptr))
            << qwen3vl_last_error();
        std::vector<float> sink(5 * 2 * 16);
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
                  qwen3vl_tensor_read(out, QWEN3VL_DTYPE_F32, sink.data(), sink.size() * 4));
        EXPECT_NE(std::string(qwen3vl_last_error()).find("segments did not run from 0 to T"), std::string::npos)
            << qwen3vl_last_error();
        EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(out, QWEN3VL_DTYPE_F32, sink.data(), sink.size() * 4));
    }
    qwen3vl_tensor* good = ints({3}, {0, 2, 5}).gpu;
    ASSERT_EQ(QWEN3VL_STATUS_OK,
              op::attention(out, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, good, nullptr));
    std::vector<float> sink(5 * 2 * 16);
    EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(out, QWEN3VL_DTYPE_F32, sink.data(), sink.size() * 4))
        << qwen3vl_last_error();
}

}  // namespace
