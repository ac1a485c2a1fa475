// The norm / activation / rotary / attention / embedding / reduction ops through the shared library's C API:
// every argument error answers INVALID_ARGUMENT with a message naming the op and the tensor, and each op runs end
// to end on a CPU backend (the numerics are covered kernel by kernel in test_ops_nn.cpp; the fused text-attention op,
// which the CPU builds from those kernels, against a double reference of the whole chain written here).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "capi_handles.h"
#include "qwen3vl.h"
#include "reference_util.h"

namespace {

using qwen3vl::testing::gamma_n;
using qwen3vl::testing::kU;
using qwen3vl::testing::nmse;

class OpsNnCApi : public ::testing::Test {
protected:
    void SetUp() override {
        qwen3vl_backend_params p = qwen3vl_backend_default_params();
        p.threads = 2;
        qwen3vl_backend* b = nullptr;
        ASSERT_EQ(qwen3vl_backend_create(&p, &b), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
        backend.reset(b);
    }
    void TearDown() override {
        tensors.clear();
        backend.reset();
    }

    qwen3vl_tensor* make(qwen3vl_dtype dtype, std::vector<int64_t> shape) {
        qwen3vl_tensor* t = nullptr;
        EXPECT_EQ(qwen3vl_tensor_create(backend.get(), dtype, int32_t(shape.size()), shape.data(), &t),
                  QWEN3VL_STATUS_OK)
            << qwen3vl_last_error();
        tensors.emplace_back(t);
        return t;
    }
    qwen3vl_tensor* f32(std::vector<int64_t> shape, const std::vector<float>& data) {
        qwen3vl_tensor* t = make(QWEN3VL_DTYPE_F32, shape);
        EXPECT_EQ(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, data.data(), data.size() * 4), QWEN3VL_STATUS_OK);
        return t;
    }
    qwen3vl_tensor* f32(std::vector<int64_t> shape, float fill = 0.5f) {
        size_t n = 1;
        for (int64_t d : shape) n *= size_t(d);
        return f32(shape, std::vector<float>(n, fill));
    }
    qwen3vl_tensor* i32(std::vector<int64_t> shape, const std::vector<int32_t>& data) {
        qwen3vl_tensor* t = make(QWEN3VL_DTYPE_I32, shape);
        EXPECT_EQ(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_I32, data.data(), data.size() * 4), QWEN3VL_STATUS_OK);
        return t;
    }
    qwen3vl_tensor* view(qwen3vl_tensor* t, int64_t offset, std::vector<int64_t> shape) {
        qwen3vl_tensor* v = nullptr;
        EXPECT_EQ(qwen3vl_tensor_view(t, offset, int32_t(shape.size()), shape.data(), &v), QWEN3VL_STATUS_OK);
        tensors.emplace_back(v);
        return v;
    }
    static std::vector<float> read(const qwen3vl_tensor* t, size_t n) {
        std::vector<float> v(n);
        EXPECT_EQ(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_F32, v.data(), n * 4), QWEN3VL_STATUS_OK);
        return v;
    }

    BackendPtr backend;
    std::vector<TensorPtr> tensors;
};

#define EXPECT_INVALID(call, text)                                                                   \
    do {                                                                                             \
        EXPECT_EQ((call), QWEN3VL_STATUS_INVALID_ARGUMENT);                                          \
        EXPECT_NE(std::string(qwen3vl_last_error()).find(text), std::string::npos) << qwen3vl_last_error(); \
    } while (0)

TEST_F(OpsNnCApi, NullTensorsAreNamed) {
    qwen3vl_tensor* x = f32({2, 8});
    qwen3vl_tensor* w = f32({8});
    EXPECT_INVALID(qwen3vl_op_add(nullptr, x, x), "qwen3vl_op_add: out is NULL");
    EXPECT_INVALID(qwen3vl_op_swiglu(x, nullptr, x), "qwen3vl_op_swiglu: gate is NULL");
    EXPECT_INVALID(qwen3vl_op_gelu(x, nullptr, 1), "qwen3vl_op_gelu: x is NULL");
    EXPECT_INVALID(qwen3vl_op_rms_norm(x, x, nullptr, 1e-6f), "qwen3vl_op_rms_norm: weight is NULL");
    EXPECT_INVALID(qwen3vl_op_add_rms_norm(nullptr, x, x, w, 1e-6f), "residual is NULL");
    EXPECT_INVALID(qwen3vl_op_layer_norm(x, x, w, nullptr, 1e-6f), "qwen3vl_op_layer_norm: bias is NULL");
    EXPECT_INVALID(qwen3vl_op_softmax(x, nullptr), "qwen3vl_op_softmax: x is NULL");
    EXPECT_INVALID(qwen3vl_op_argmax(nullptr, x), "qwen3vl_op_argmax: out is NULL");
    EXPECT_INVALID(qwen3vl_op_embedding(x, x, nullptr), "qwen3vl_op_embedding: ids is NULL");
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, nullptr, x, 0), "qwen3vl_op_scatter_rows: rows is NULL");
    EXPECT_INVALID(qwen3vl_op_rope_vision(nullptr, x, 1e4f), "qwen3vl_op_rope_vision: qkv is NULL");
    EXPECT_INVALID(qwen3vl_op_position_embedding(x, nullptr, 2, 2, 2), "qwen3vl_op_position_embedding: table is NULL");
    EXPECT_INVALID(qwen3vl_op_attention(f32({2, 1, 8}), f32({2, 1, 8}), nullptr, x, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "qwen3vl_op_attention: k_cache is NULL");
    const int64_t sec[3] = {2, 1, 1};
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_kv(x, x, x, w, w, 1e-6f, nullptr, 1e6f, sec, x, x, 0, nullptr),
                   "qwen3vl_op_qk_norm_rope_kv: positions is NULL");
}

TEST_F(OpsNnCApi, DtypesAndShapesAreChecked) {
    qwen3vl_tensor* x = f32({2, 8});
    qwen3vl_tensor* out = f32({2, 8});
    qwen3vl_tensor* x16 = make(QWEN3VL_DTYPE_F16, {2, 8});
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x16, f32({8}), 1e-6f), "qwen3vl_op_rms_norm: x must be f32, got f16");
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x, f32({7}), 1e-6f), "weight has shape [7], expected [8]");
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x, make(QWEN3VL_DTYPE_I32, {8}), 1e-6f), "weight must be f32 or f16 or bf16");
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x, f32({8}), -1.0f), "eps must be finite");
    EXPECT_INVALID(qwen3vl_op_add(f32({2, 9}), x, x), "out has shape [2, 9], expected [2, 8]");
    EXPECT_INVALID(qwen3vl_op_add(out, x, f32({8, 2})), "b has shape [8, 2]");
    EXPECT_INVALID(qwen3vl_op_gelu(out, x, 2), "tanh_approximation must be 0 or 1");
    EXPECT_INVALID(qwen3vl_op_argmax(f32({2}), x), "out must be i32");
    EXPECT_INVALID(qwen3vl_op_argmax(make(QWEN3VL_DTYPE_I32, {3}), x), "out has shape [3], expected [2]");
    EXPECT_INVALID(qwen3vl_op_layer_norm(out, x, f32({8}), f32({4}), 1e-6f), "bias has shape [4], expected [8]");
}

TEST_F(OpsNnCApi, AliasingRulesAreEnforced) {
    qwen3vl_tensor* buf = f32({17});
    qwen3vl_tensor* a = view(buf, 0, {2, 8});
    qwen3vl_tensor* shifted = view(buf, 1, {2, 8});
    qwen3vl_tensor* w = f32({8});
    EXPECT_INVALID(qwen3vl_op_rms_norm(shifted, a, w, 1e-6f), "out partly overlaps x");
    EXPECT_EQ(qwen3vl_op_rms_norm(a, a, w, 1e-6f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();  // in place
    qwen3vl_tensor* x = f32({2, 8});
    EXPECT_INVALID(qwen3vl_op_add_rms_norm(a, a, x, w, 1e-6f), "out overlaps residual");
    EXPECT_INVALID(qwen3vl_op_scatter_rows(a, i32({1}, {0}), view(buf, 8, {1, 8}), 0), "src overlaps x");
}

TEST_F(OpsNnCApi, IndexRangesAreChecked) {
    qwen3vl_tensor* table = f32({50, 4});
    EXPECT_INVALID(qwen3vl_op_embedding(f32({3, 4}), table, i32({3}, {1, 50, 2})),
                   "qwen3vl_op_embedding: ids[1] = 50 is outside the table's 50 rows");
    EXPECT_INVALID(qwen3vl_op_embedding(f32({1, 4}), table, i32({1}, {-1})), "ids[0] = -1");
    EXPECT_INVALID(qwen3vl_op_embedding(f32({3, 5}), table, i32({3}, {0, 0, 0})), "out has shape [3, 5], expected [3, 4]");
    qwen3vl_tensor* x = f32({6, 4});
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, i32({2}, {1, 6}), f32({2, 4}), 0), "rows[1] = 6 is outside x's 6 rows");
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, i32({2}, {3, 3}), f32({2, 4}), 1), "rows[1] = 3 repeats");
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, i32({1}, {3}), f32({1, 4}), 5), "accumulate must be 0 or 1");
}

TEST_F(OpsNnCApi, RotaryArgumentsAreChecked) {
    const int64_t T = 2, H = 2, D = 8;
    qwen3vl_tensor *q = f32({T, H, D}), *k = f32({T, 1, D}), *v = f32({T, 1, D}), *w = f32({D});
    qwen3vl_tensor* pos = i32({3, T}, {0, 1, 0, 1, 0, 1});
    qwen3vl_tensor *kc = f32({4, 1, D}), *vc = f32({4, 1, D});
    const int64_t sec[3] = {2, 1, 1};
    EXPECT_EQ(qwen3vl_op_qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 2, nullptr), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 3, nullptr),
                   "n_past 3 + 2 tokens does not fit the cache's 4 rows");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, nullptr, kc, vc, 0, nullptr), "mrope_section is NULL");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_kv(q, k, v, w, w, 1e-6f, i32({3, 1}, {0, 0, 0}), 1e6f, sec, kc, vc, 0, nullptr),
                   "positions has shape [3, 1], expected [3, 2]");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, make(QWEN3VL_DTYPE_BF16, {4, 1, D}), 0, nullptr),
                   "v_cache must be f32, got bf16");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, kc, 0, nullptr), "k_cache overlaps v_cache");
    EXPECT_INVALID(qwen3vl_op_rope_vision(f32({T, 3, H, 6}), i32({T, 2}, {0, 0, 0, 1}), 1e4f), "must be a multiple of 4");
    EXPECT_INVALID(qwen3vl_op_rope_vision(f32({T, 2, H, 8}), i32({T, 2}, {0, 0, 0, 1}), 1e4f),
                   "qkv has shape [2, 2, 2, 8], expected [*, 3, *, *]");
}

TEST_F(OpsNnCApi, AttentionArgumentsAreChecked) {
    const int64_t D = 8;
    qwen3vl_tensor *q = f32({2, 3, D}), *out = f32({2, 3, D}), *kc = f32({5, 2, D}), *vc = f32({5, 2, D});
    EXPECT_INVALID(qwen3vl_op_attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "q has 3 heads, not a multiple of the cache's 2");
    qwen3vl_tensor* q4 = f32({2, 4, D});
    qwen3vl_tensor* out4 = f32({2, 4, D});
    EXPECT_INVALID(qwen3vl_op_attention(out4, q4, kc, vc, 4, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
                   "n_past 4 + 2 tokens exceeds the cache's 5 rows");
    EXPECT_INVALID(qwen3vl_op_attention(out4, q4, kc, vc, 0, static_cast<qwen3vl_attention_mask>(7), nullptr, nullptr),
                   "unknown mask 7");
    EXPECT_INVALID(qwen3vl_op_attention(out4, q4, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, i32({2}, {0, 2}), nullptr),
                   "segments must be NULL");
    EXPECT_INVALID(qwen3vl_op_attention(q4, q4, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr), "out overlaps q");
    qwen3vl_tensor* qkv = f32({5, 3, 2, D});
    qwen3vl_tensor* vout = f32({5, 2, D});
    EXPECT_INVALID(qwen3vl_op_attention(vout, qkv, kc, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({2}, {0, 5}), nullptr),
                   "k_cache and v_cache must be NULL");
    EXPECT_INVALID(qwen3vl_op_attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({3}, {0, 2, 4}), nullptr),
                   "segments must run from 0 to T = 5");
    EXPECT_INVALID(qwen3vl_op_attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({3}, {0, 3, 2}), nullptr),
                   "segments must run from 0 to T");
    EXPECT_INVALID(qwen3vl_op_attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({4}, {0, 3, 2, 5}), nullptr),
                   "segments decrease at index 2");
    EXPECT_INVALID(qwen3vl_op_attention(vout, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, nullptr, nullptr),
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
// These are worst cases; the typical error is a random walk, so NMSE <= 1e-10 is also required (as test_ops_nn.cpp's
// attention tests: f32 dot products and exponentials over the keys).

struct TextAttentionCase {
    int64_t T, Hq, Hkv, D, cap, n_past;
    int64_t section[3];
};

struct TextAttentionRef {
    std::vector<double> k, k_err;      // normed and rotated k [T, Hkv, D]: the cache rows n_past ..
    std::vector<double> out, out_err;  // [T, Hq, D]
};

// keys / values: the cache's rows before n_past (f32, [n_past, Hkv, D]); qn, kn: the norm weights' stored values.
TextAttentionRef text_attention_ref(const TextAttentionCase& c, const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, const std::vector<float>& qn,
                                    const std::vector<float>& kn, float eps, const std::vector<int32_t>& pos,
                                    float theta, const std::vector<float>& prior_k, const std::vector<float>& prior_v) {
    const int64_t T = c.T, D = c.D, half = D / 2, G = c.Hq / c.Hkv;
    std::vector<float> inv(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
        inv[size_t(i)] = 1.0f / float(std::pow(double(theta), double(float(2 * i) / float(D))));
    auto angle = [&](int64_t t, int64_t i) {
        int32_t p = pos[size_t(t)];
        if (i % 3 == 1 && i < 3 * c.section[1]) p = pos[size_t(T + t)];
        else if (i % 3 == 2 && i < 3 * c.section[2]) p = pos[size_t(2 * T + t)];
        return double(float(p) * inv[size_t(i)]);
    };
    // RMSNorm then rotate-half of every head row; A = |r_d| + |r_d'| per element.
    auto norm_rope = [&](const std::vector<float>& x, int64_t H, const std::vector<float>& w, std::vector<double>& y,
                         std::vector<double>& A) {
        y.assign(x.size(), 0.0);
        A.assign(x.size(), 0.0);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t h = 0; h < H; ++h) {
                const size_t o = size_t((t * H + h) * D);
                double ss = 0.0;
                for (int64_t d = 0; d < D; ++d) ss += double(x[o + d]) * x[o + d];
                const double s = 1.0 / std::sqrt(ss / double(D) + double(eps));
                for (int64_t d = 0; d < D; ++d) y[o + d] = x[o + d] * s * w[size_t(d)];
                for (int64_t i = 0; i < half; ++i) {
                    const double a = angle(t, i), x1 = y[o + i], x2 = y[o + i + half];
                    y[o + i] = x1 * std::cos(a) - x2 * std::sin(a);
                    y[o + i + half] = x2 * std::cos(a) + x1 * std::sin(a);
                    A[o + i] = A[o + i + half] = std::fabs(y[o + i]) + std::fabs(y[o + i + half]);
                }
            }
    };
    TextAttentionRef r;
    std::vector<double> qr, qA, kA;
    norm_rope(q, c.Hq, qn, qr, qA);
    norm_rope(k, c.Hkv, kn, r.k, kA);
    r.k_err.resize(kA.size());
    for (size_t i = 0; i < kA.size(); ++i) r.k_err[i] = gamma_n(double(D + 10)) * kA[i];

    // All keys and values the queries can see: the cache's earlier rows (exact), then the new ones.
    const int64_t row = c.Hkv * D, n_all = c.n_past + T;
    std::vector<double> K(size_t(n_all * row)), KA(size_t(n_all * row)), V(size_t(n_all * row));
    for (int64_t i = 0; i < c.n_past * row; ++i) {
        K[size_t(i)] = prior_k[size_t(i)];
        V[size_t(i)] = prior_v[size_t(i)];
    }
    for (int64_t i = 0; i < c.n_past * row; i += D)
        for (int64_t d = 0; d < half; ++d)
            KA[size_t(i + d)] = KA[size_t(i + d + half)] =
                std::fabs(K[size_t(i + d)]) + std::fabs(K[size_t(i + d + half)]);
    for (int64_t i = 0; i < T * row; ++i) {
        K[size_t(c.n_past * row + i)] = r.k[size_t(i)];
        KA[size_t(c.n_past * row + i)] = kA[size_t(i)];
        V[size_t(c.n_past * row + i)] = v[size_t(i)];
    }
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
TEST_F(OpsNnCApi, QkNormRopeAttentionMatchesDoubleReference) {
    std::mt19937 rng(20240611);
    auto uniform = [&](size_t n, float lo, float hi) {
        std::uniform_real_distribution<float> dist(lo, hi);
        std::vector<float> x(n);
        for (float& e : x) e = dist(rng);
        return x;
    };
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
            std::vector<float> qv = uniform(size_t(T * Hq * D), -2, 2), kv = uniform(size_t(T * row), -2, 2);
            for (size_t i = 0; i < qv.size(); ++i)
                if ((i / size_t(D)) % 3 == 2) qv[i] *= 1e-3f;
            for (size_t i = 0; i < kv.size(); ++i)
                if ((i / size_t(D)) % 3 == 1) kv[i] *= 1e-3f;
            const std::vector<float> vv = uniform(size_t(T * row), -1, 1);
            const std::vector<float> prior_k = uniform(size_t(c.n_past * row), -1.5f, 1.5f);
            const std::vector<float> prior_v = uniform(size_t(c.n_past * row), -1, 1);
            std::vector<int32_t> posv(size_t(3 * T));
            for (int32_t& p : posv) p = std::uniform_int_distribution<int32_t>(0, 5000)(rng);  // three streams differ
            qwen3vl_tensor* qn = make(bf16_q_norm ? QWEN3VL_DTYPE_BF16 : QWEN3VL_DTYPE_F32, {D});
            const std::vector<float> qn_in = uniform(size_t(D), 0.5f, 1.5f);
            ASSERT_EQ(qwen3vl_tensor_write(qn, QWEN3VL_DTYPE_F32, qn_in.data(), size_t(D) * 4), QWEN3VL_STATUS_OK);
            qwen3vl_tensor* kn = f32({D}, uniform(size_t(D), 0.5f, 1.5f));
            std::vector<float> cache_k(size_t(c.cap * row), nan), cache_v(size_t(c.cap * row), nan);
            std::copy(prior_k.begin(), prior_k.end(), cache_k.begin());
            std::copy(prior_v.begin(), prior_v.end(), cache_v.begin());
            qwen3vl_tensor *q = f32({T, Hq, D}, qv), *k = f32({T, Hkv, D}, kv), *v = f32({T, Hkv, D}, vv);
            qwen3vl_tensor *kc = f32({c.cap, Hkv, D}, cache_k), *vc = f32({c.cap, Hkv, D}, cache_v);
            qwen3vl_tensor* out = f32({T, Hq, D}, nan);
            ASSERT_EQ(qwen3vl_op_qk_norm_rope_attention(out, q, k, v, qn, kn, eps, i32({3, T}, posv), theta, c.section,
                                                        kc, vc, n_past_tensor ? 0 : c.n_past,
                                                        n_past_tensor ? i32({1}, {int32_t(c.n_past)}) : nullptr),
                      QWEN3VL_STATUS_OK)
                << qwen3vl_last_error();
            const TextAttentionRef want = text_attention_ref(c, qv, kv, vv, read(qn, size_t(D)), read(kn, size_t(D)),
                                                             eps, posv, theta, prior_k, prior_v);
            const std::vector<float> got = read(out, size_t(T * Hq * D));
            for (size_t i = 0; i < got.size(); ++i)
                ASSERT_TRUE(std::fabs(got[i] - want.out[i]) <= want.out_err[i])
                    << "out element " << i << ": got " << got[i] << ", want " << want.out[i] << " (bound "
                    << want.out_err[i] << ")";
            EXPECT_LE(nmse(got, want.out), 1e-10);
            // Rows before n_past are left alone, rows n_past .. n_past + T - 1 hold the reference k and v exactly as
            // given (an f32 cache), the rows after stay NaN.
            const std::vector<float> kc_got = read(kc, cache_k.size()), vc_got = read(vc, cache_v.size());
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
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0,
                                                     i32({1}, {5})),
                   "qwen3vl_op_qk_norm_rope_attention: n_past_tensor holds 5, outside 0 .. 4");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 5, nullptr),
                   "qwen3vl_op_qk_norm_rope_attention: n_past 5 + 2 tokens does not fit the cache's 6 rows");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(f32({T, Hq, 4}), q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0,
                                                     nullptr),
                   "out has shape [2, 4, 4], expected [2, 4, 8]");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(q, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0, nullptr),
                   "out overlaps q");
    qwen3vl_tensor *q3 = f32({T, 3, D}), *o3 = f32({T, 3, D});
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(o3, q3, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0, nullptr),
                   "q has 3 heads, not a multiple of k's 2");
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, nullptr, kc, vc, 0, nullptr),
                   "qwen3vl_op_qk_norm_rope_attention: mrope_section is NULL");
}

TEST_F(OpsNnCApi, PositionEmbeddingArgumentsAreChecked) {
    EXPECT_INVALID(qwen3vl_op_position_embedding(f32({4, 3}), f32({10, 3}), 2, 2, 2), "table has 10 rows, not a square grid");
    EXPECT_INVALID(qwen3vl_op_position_embedding(f32({15, 3}), f32({16, 3}), 3, 5, 2),
                   "grid 3 x 5 must be positive multiples of merge 2");
    EXPECT_INVALID(qwen3vl_op_position_embedding(f32({15, 4}), f32({16, 3}), 3, 5, 1), "out has shape [15, 4], expected [15, 3]");
}

TEST_F(OpsNnCApi, TopKArgumentsAreChecked) {
    qwen3vl_tensor* x = f32({2, 8});
    qwen3vl_tensor* v = f32({2, 3});
    qwen3vl_tensor* ix = make(QWEN3VL_DTYPE_I32, {2, 3});
    EXPECT_INVALID(qwen3vl_op_top_k(nullptr, ix, x, 3), "qwen3vl_op_top_k: values is NULL");
    EXPECT_INVALID(qwen3vl_op_top_k(v, nullptr, x, 3), "qwen3vl_op_top_k: indices is NULL");
    EXPECT_INVALID(qwen3vl_op_top_k(v, ix, nullptr, 3), "qwen3vl_op_top_k: x is NULL");
    EXPECT_INVALID(qwen3vl_op_top_k(v, ix, x, 0), "k = 0 must be in 1 .. min(8");
    EXPECT_INVALID(qwen3vl_op_top_k(v, ix, x, 9), "k = 9 must be in 1 .. min(8");
    qwen3vl_tensor* wide = f32({1, QWEN3VL_TOP_K_MAX + 1});
    EXPECT_INVALID(qwen3vl_op_top_k(f32({1, QWEN3VL_TOP_K_MAX + 1}), make(QWEN3VL_DTYPE_I32, {1, QWEN3VL_TOP_K_MAX + 1}),
                                    wide, QWEN3VL_TOP_K_MAX + 1),
                   "QWEN3VL_TOP_K_MAX = 1024");
    EXPECT_INVALID(qwen3vl_op_top_k(make(QWEN3VL_DTYPE_I32, {2, 3}), ix, x, 3), "values must be f32, got i32");
    EXPECT_INVALID(qwen3vl_op_top_k(v, f32({2, 3}), x, 3), "indices must be i32, got f32");
    EXPECT_INVALID(qwen3vl_op_top_k(v, ix, make(QWEN3VL_DTYPE_F16, {2, 8}), 3), "x must be f32, got f16");
    EXPECT_INVALID(qwen3vl_op_top_k(f32({2, 4}), ix, x, 3), "values has shape [2, 4], expected [2, 3]");
    EXPECT_INVALID(qwen3vl_op_top_k(v, make(QWEN3VL_DTYPE_I32, {6}), x, 3), "indices has shape [6], expected [2, 3]");
    qwen3vl_tensor* buf = f32({22});
    EXPECT_INVALID(qwen3vl_op_top_k(view(buf, 0, {2, 3}), ix, view(buf, 4, {2, 8}), 3), "must not share memory");

    // Descending, ties to the lower index, NaN first; any leading shape.
    const float nan = std::nanf("");
    qwen3vl_tensor* logits = f32({2, 1, 5}, {0, 3, 3, -1, 2, 1, nan, 1, 7, -0.0f});
    qwen3vl_tensor* top = f32({2, 1, 3}, 0.0f);
    qwen3vl_tensor* ids = make(QWEN3VL_DTYPE_I32, {2, 1, 3});
    ASSERT_EQ(qwen3vl_op_top_k(top, ids, logits, 3), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    std::vector<int32_t> got(6);
    ASSERT_EQ(qwen3vl_tensor_read(ids, QWEN3VL_DTYPE_I32, got.data(), 24), QWEN3VL_STATUS_OK);
    EXPECT_EQ(got, (std::vector<int32_t>{1, 2, 4, 1, 3, 0}));
    const std::vector<float> vals = read(top, 6);
    EXPECT_EQ(std::vector<float>(vals.begin(), vals.begin() + 3), (std::vector<float>{3, 3, 2}));
    EXPECT_TRUE(std::isnan(vals[3]));
    EXPECT_EQ(vals[4], 7.0f);
    EXPECT_EQ(vals[5], 1.0f);
    qwen3vl_tensor* one = f32({1}, 0.0f);
    qwen3vl_tensor* one_id = make(QWEN3VL_DTYPE_I32, {1});
    ASSERT_EQ(qwen3vl_op_top_k(one, one_id, f32({4}, {1, 5, 2, 5}), 1), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    int32_t best = -1;
    ASSERT_EQ(qwen3vl_tensor_read(one_id, QWEN3VL_DTYPE_I32, &best, 4), QWEN3VL_STATUS_OK);
    EXPECT_EQ(best, 1);
}

TEST_F(OpsNnCApi, OpsRunEndToEnd) {
    // rms_norm of a constant row is the weight; add_rms_norm updates the residual.
    qwen3vl_tensor* x = f32({2, 4}, {1, 1, 1, 1, -2, -2, -2, -2});
    qwen3vl_tensor* w = make(QWEN3VL_DTYPE_BF16, {4});
    const std::vector<float> wv = {1, 2, 3, 4};
    ASSERT_EQ(qwen3vl_tensor_write(w, QWEN3VL_DTYPE_F32, wv.data(), 16), QWEN3VL_STATUS_OK);
    qwen3vl_tensor* out = f32({2, 4}, 0.0f);
    ASSERT_EQ(qwen3vl_op_rms_norm(out, x, w, 0.0f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(out, 8), (std::vector<float>{1, 2, 3, 4, -1, -2, -3, -4}));
    qwen3vl_tensor* res = f32({2, 4}, 1.0f);
    ASSERT_EQ(qwen3vl_op_add_rms_norm(res, out, x, w, 0.0f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(res, 8), (std::vector<float>{2, 2, 2, 2, -1, -1, -1, -1}));
    EXPECT_EQ(read(out, 8), (std::vector<float>{1, 2, 3, 4, -1, -2, -3, -4}));

    // softmax of equal logits is uniform; argmax picks the first of equal maxima.
    qwen3vl_tensor* logits = f32({2, 4}, {0, 3, 3, 1, 5, 5, 5, 5});
    qwen3vl_tensor* p = f32({2, 4}, 0.0f);
    ASSERT_EQ(qwen3vl_op_softmax(p, logits), QWEN3VL_STATUS_OK);
    EXPECT_FLOAT_EQ(read(p, 8)[5], 0.25f);
    qwen3vl_tensor* best = make(QWEN3VL_DTYPE_I32, {2});
    ASSERT_EQ(qwen3vl_op_argmax(best, logits), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    std::vector<int32_t> ids(2);
    ASSERT_EQ(qwen3vl_tensor_read(best, QWEN3VL_DTYPE_I32, ids.data(), 8), QWEN3VL_STATUS_OK);
    EXPECT_EQ(ids, (std::vector<int32_t>{1, 0}));

    // embedding then scatter back.
    qwen3vl_tensor* table = f32({3, 2}, {0, 1, 10, 11, 20, 21});
    qwen3vl_tensor* e = f32({2, 2}, 0.0f);
    ASSERT_EQ(qwen3vl_op_embedding(e, table, i32({2}, {2, 0})), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(e, 4), (std::vector<float>{20, 21, 0, 1}));
    ASSERT_EQ(qwen3vl_op_scatter_rows(table, i32({1}, {1}), view(e, 0, {1, 2}), 1), QWEN3VL_STATUS_OK);
    EXPECT_EQ(read(table, 6), (std::vector<float>{0, 1, 30, 32, 20, 21}));

    // One key: attention returns its value whatever the query.
    qwen3vl_tensor* q = f32({1, 2, 4}, 0.3f);
    qwen3vl_tensor* kc = f32({3, 1, 4}, 0.7f);
    qwen3vl_tensor* vc = f32({3, 1, 4}, {1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9});
    qwen3vl_tensor* ao = f32({1, 2, 4}, 0.0f);
    ASSERT_EQ(qwen3vl_op_attention(ao, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_EQ(read(ao, 8), (std::vector<float>{1, 2, 3, 4, 1, 2, 3, 4}));
    // Segments of one token each: every query sees only its own value.
    qwen3vl_tensor* qkv = f32({2, 3, 1, 4}, {0, 0, 0, 0, 1, 1, 1, 1, 5, 6, 7, 8, 0, 0, 0, 0, 1, 1, 1, 1, -1, -2, -3, -4});
    qwen3vl_tensor* so = f32({2, 1, 4}, 0.0f);
    ASSERT_EQ(qwen3vl_op_attention(so, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, i32({3}, {0, 1, 2}), nullptr),
              QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_EQ(read(so, 8), (std::vector<float>{5, 6, 7, 8, -1, -2, -3, -4}));
    ASSERT_EQ(qwen3vl_op_rope_vision(qkv, i32({2, 2}, {0, 0, 1, 1}), 1e4f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();

    // A 2x2 table sampled on a 2x2 grid is itself, in merge order.
    qwen3vl_tensor* pt = f32({4, 1}, {1, 2, 3, 4});
    qwen3vl_tensor* pe = f32({4, 1}, 0.0f);
    ASSERT_EQ(qwen3vl_op_position_embedding(pe, pt, 2, 2, 2), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(pe, 4), (std::vector<float>{1, 2, 3, 4}));

    qwen3vl_tensor* g = f32({1, 2}, {0.0f, 1.0f});
    ASSERT_EQ(qwen3vl_op_gelu(g, g, 0), QWEN3VL_STATUS_OK);
    EXPECT_NEAR(read(g, 2)[1], 0.8413447, 1e-6);
    ASSERT_EQ(qwen3vl_op_swiglu(g, g, g), QWEN3VL_STATUS_OK);
    ASSERT_EQ(qwen3vl_op_add(g, g, g), QWEN3VL_STATUS_OK);
}

}  // namespace
