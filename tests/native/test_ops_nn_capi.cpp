// The norm / activation / rotary / attention / embedding / reduction ops through the shared library's C API:
// every argument error answers INVALID_ARGUMENT with a message naming the op and the tensor, and each op runs end
// to end on a CPU backend (the numerics are covered kernel by kernel in test_ops_nn.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "capi_handles.h"
#include "qwen3vl.h"

namespace {

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

// The fused prologue + attention checks the arguments of both ops it stands for (messages name the fused op), and on
// the CPU its output and cache rows equal qwen3vl_op_qk_norm_rope_kv then qwen3vl_op_attention bit for bit.
TEST_F(OpsNnCApi, QkNormRopeAttentionIsTheTwoOps) {
    const int64_t T = 2, Hq = 4, Hkv = 2, D = 8, cap = 6, n_past = 3;
    std::vector<float> qv(T * Hq * D), kv(T * Hkv * D), vv(T * Hkv * D), cv(cap * Hkv * D), wv(D);
    float x = 0.1f;
    for (auto* vec : {&qv, &kv, &vv, &cv, &wv})
        for (float& e : *vec) e = (x = std::fmod(x * 7.3f + 0.37f, 2.0f)) - 1.0f;
    qwen3vl_tensor *pos = i32({3, T}, {5, 6, 2, 2, 3, 4}), *w = f32({D}, wv);
    const int64_t sec[3] = {2, 1, 1};
    qwen3vl_tensor *q = f32({T, Hq, D}, qv), *k = f32({T, Hkv, D}, kv), *v = f32({T, Hkv, D}, vv);
    qwen3vl_tensor *kc = f32({cap, Hkv, D}, cv), *vc = f32({cap, Hkv, D}, cv), *out = f32({T, Hq, D}, 0.0f);
    ASSERT_EQ(qwen3vl_op_qk_norm_rope_attention(out, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, n_past, nullptr),
              QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    qwen3vl_tensor *q2 = f32({T, Hq, D}, qv), *k2 = f32({T, Hkv, D}, kv);
    qwen3vl_tensor *kc2 = f32({cap, Hkv, D}, cv), *vc2 = f32({cap, Hkv, D}, cv), *out2 = f32({T, Hq, D}, 0.0f);
    ASSERT_EQ(qwen3vl_op_qk_norm_rope_kv(q2, k2, v, w, w, 1e-6f, pos, 1e6f, sec, kc2, vc2, n_past, nullptr),
              QWEN3VL_STATUS_OK);
    ASSERT_EQ(qwen3vl_op_attention(out2, q2, kc2, vc2, n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr, nullptr),
              QWEN3VL_STATUS_OK);
    EXPECT_EQ(read(out, T * Hq * D), read(out2, T * Hq * D));
    EXPECT_EQ(read(kc, cap * Hkv * D), read(kc2, cap * Hkv * D));
    EXPECT_EQ(read(vc, cap * Hkv * D), read(vc2, cap * Hkv * D));
    // n_past from a tensor, read and checked on the CPU.
    ASSERT_EQ(qwen3vl_op_qk_norm_rope_attention(out, f32({T, Hq, D}, qv), f32({T, Hkv, D}, kv), v, w, w, 1e-6f, pos,
                                                1e6f, sec, kc, vc, 0, i32({1}, {int32_t(n_past)})),
              QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_EQ(read(out, T * Hq * D), read(out2, T * Hq * D));
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
