// Every op of the C API on the CUDA backend against the CPU backend, through the exported C API (the dispatch in
// capi/ops_*.cpp included), on fresh random inputs in [-1, 1]; the seed is printed with every failure. Outputs are
// poisoned with NaN before the op so unwritten elements show. Agreement is NMSE = sum (gpu - cpu)^2 / sum cpu^2:
//  - fp32 ops: 1e-11 (elementwise, norms, reductions: only the order of f32 sums and ulp-level libm differences);
//    rotary, whose cos/sin go through double on both sides, and attention (online softmax in a different tile
//    order; decode-shaped cases take the split-K path): 1e-10 / 1e-9;
//  - 16-bit KV cache writes: 1e-8 (a last-bit difference in f32 can flip a bf16 rounding: ~2^-8 on a few elements);
//  - linear with M > 16 on tensor cores: x is rounded to the weight dtype, a relative error of up to 2^-9 (bf16) or
//    2^-12 (f16) per element, uniform, so the NMSE of a long dot product is about (2^-9)^2 / 3 = 1.3e-6 for bf16:
//    threshold 1e-5 (2e-5 for swiglu, a product of two such results). Elsewhere linear is fp32: 1e-10.
//  - gathers, scatters and argmax: exact.
// Each case SKIPs with a message when the machine has no CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "qwen3vl.h"

namespace {

struct Pair {
    qwen3vl_tensor* cpu = nullptr;
    qwen3vl_tensor* gpu = nullptr;
};

class CudaOpsTest : public ::testing::Test {
protected:
    void SetUp() override {
        int32_t n = 0;
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_cuda_device_count(&n)) << qwen3vl_last_error();
        if (n == 0) GTEST_SKIP() << "no CUDA device on this machine";
        qwen3vl_cuda_device dev = qwen3vl_cuda_device_init();
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_cuda_device_get(0, &dev)) << qwen3vl_last_error();
        cc_ = dev.compute_major * 10 + dev.compute_minor;
        seed_ = std::random_device{}();
        rng_.seed(seed_);
        qwen3vl_backend_params p = qwen3vl_backend_default_params();
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_backend_create(&p, &cpu_)) << qwen3vl_last_error();
        p.type = QWEN3VL_BACKEND_CUDA;
        p.device = 0;
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_backend_create(&p, &gpu_)) << qwen3vl_last_error();
    }

    void TearDown() override {
        for (auto it = owned_.rbegin(); it != owned_.rend(); ++it) qwen3vl_tensor_free(*it);
        qwen3vl_backend_free(gpu_);
        qwen3vl_backend_free(cpu_);
    }

    static void check(qwen3vl_status st, const char* what) {
        if (st != QWEN3VL_STATUS_OK)
            throw std::runtime_error(std::string(what) + ": " + qwen3vl_status_name(st) + ": " + qwen3vl_last_error());
    }

    std::string seed() const { return "seed " + std::to_string(seed_); }

    std::vector<float> random(size_t n, float lo = -1.0f, float hi = 1.0f) {
        std::uniform_real_distribution<float> u(lo, hi);
        std::vector<float> v(n);
        for (float& x : v) x = u(rng_);
        return v;
    }
    int32_t randint(int32_t lo, int32_t hi) { return std::uniform_int_distribution<int32_t>(lo, hi)(rng_); }

    static size_t count(const std::vector<int64_t>& shape) {
        return std::accumulate(shape.begin(), shape.end(), size_t(1),
                               [](size_t a, int64_t b) { return a * static_cast<size_t>(b); });
    }

    qwen3vl_tensor* create(qwen3vl_backend* be, qwen3vl_dtype dt, const std::vector<int64_t>& shape) {
        qwen3vl_tensor* t = nullptr;
        check(qwen3vl_tensor_create(be, dt, static_cast<int32_t>(shape.size()), shape.data(), &t), "tensor_create");
        owned_.push_back(t);
        return t;
    }

    // The same values (written as f32, converted to dt) on both backends; no values: NaN poison (f32 only).
    Pair tensor(qwen3vl_dtype dt, const std::vector<int64_t>& shape, std::vector<float> values = {}) {
        if (values.empty()) values.assign(count(shape), std::numeric_limits<float>::quiet_NaN());
        Pair p{create(cpu_, dt, shape), create(gpu_, dt, shape)};
        for (qwen3vl_tensor* t : {p.cpu, p.gpu})
            check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, values.data(), values.size() * 4), "tensor_write");
        return p;
    }
    Pair rand_tensor(qwen3vl_dtype dt, const std::vector<int64_t>& shape) { return tensor(dt, shape, random(count(shape))); }
    Pair ints(const std::vector<int64_t>& shape, const std::vector<int32_t>& values) {
        Pair p{create(cpu_, QWEN3VL_DTYPE_I32, shape), create(gpu_, QWEN3VL_DTYPE_I32, shape)};
        for (qwen3vl_tensor* t : {p.cpu, p.gpu})
            check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_I32, values.data(), values.size() * 4), "tensor_write");
        return p;
    }
    Pair view(const Pair& base, int64_t offset, const std::vector<int64_t>& shape) {
        Pair p;
        check(qwen3vl_tensor_view(base.cpu, offset, int32_t(shape.size()), shape.data(), &p.cpu), "tensor_view");
        owned_.push_back(p.cpu);
        check(qwen3vl_tensor_view(base.gpu, offset, int32_t(shape.size()), shape.data(), &p.gpu), "tensor_view");
        owned_.push_back(p.gpu);
        return p;
    }

    static std::vector<float> read(const qwen3vl_tensor* t) {
        qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
        check(qwen3vl_tensor_describe(t, &d), "tensor_describe");
        std::vector<int64_t> shape(d.shape, d.shape + d.ndim);
        std::vector<float> v(count(shape));
        check(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4), "tensor_read");
        return v;
    }
    static std::vector<int32_t> read_i32(const qwen3vl_tensor* t) {
        qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
        check(qwen3vl_tensor_describe(t, &d), "tensor_describe");
        std::vector<int32_t> v(static_cast<size_t>(d.bytes / 4));
        check(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_I32, v.data(), v.size() * 4), "tensor_read");
        return v;
    }

    static double nmse(const std::vector<float>& ref, const std::vector<float>& got) {
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < ref.size(); ++i) {
            const double d = static_cast<double>(got[i]) - static_cast<double>(ref[i]);
            num += d * d;
            den += static_cast<double>(ref[i]) * ref[i];
        }
        return den > 0.0 ? num / den : num;  // NaN when the GPU left a poisoned element
    }

    void expect_close(const Pair& p, double threshold, const std::string& what) {
        const std::vector<float> ref = read(p.cpu), got = read(p.gpu);
        ASSERT_EQ(ref.size(), got.size());
        const double e = nmse(ref, got);
        EXPECT_LE(e, threshold) << what << " (" << seed() << ")";
    }
    void expect_equal(const Pair& p, const std::string& what) {
        EXPECT_EQ(read(p.cpu), read(p.gpu)) << what << " (" << seed() << ")";
    }

    // Runs op on the CPU and on the GPU tensors of the pairs (picked by the flag), both must succeed.
    template <class Op>
    void both(const char* name, Op op) {
        check(op(true), (std::string(name) + " on the CPU").c_str());
        check(op(false), (std::string(name) + " on CUDA").c_str());
    }
    static qwen3vl_tensor* on(const Pair& p, bool cpu) { return cpu ? p.cpu : p.gpu; }

    int cc_ = 0;
    unsigned seed_ = 0;
    std::mt19937 rng_;
    qwen3vl_backend* cpu_ = nullptr;
    qwen3vl_backend* gpu_ = nullptr;
    std::vector<qwen3vl_tensor*> owned_;
};

constexpr qwen3vl_dtype kF32 = QWEN3VL_DTYPE_F32, kF16 = QWEN3VL_DTYPE_F16, kBF16 = QWEN3VL_DTYPE_BF16;
const char* name(qwen3vl_dtype d) { return d == kF32 ? "f32" : d == kF16 ? "f16" : d == kBF16 ? "bf16" : "i32"; }

TEST_F(CudaOpsTest, AddSwigluGelu) {
    for (int64_t n : {int64_t(1), int64_t(1000), int64_t(65537)}) {
        const std::string at = " n=" + std::to_string(n);
        Pair a = rand_tensor(kF32, {n}), b = rand_tensor(kF32, {n}), out = tensor(kF32, {n});
        both("add", [&](bool c) { return qwen3vl_op_add(on(out, c), on(a, c), on(b, c)); });
        expect_close(out, 1e-11, "add" + at);
        both("swiglu", [&](bool c) { return qwen3vl_op_swiglu(on(out, c), on(a, c), on(b, c)); });
        expect_close(out, 1e-11, "swiglu" + at);
        for (int tanh_form : {0, 1}) {
            Pair x = tensor(kF32, {n}, random(size_t(n), -4.0f, 4.0f)), y = tensor(kF32, {n});
            both("gelu", [&](bool c) { return qwen3vl_op_gelu(on(y, c), on(x, c), tanh_form); });
            expect_close(y, 1e-11, "gelu tanh=" + std::to_string(tanh_form) + at);
        }
        both("add in place", [&](bool c) { return qwen3vl_op_add(on(a, c), on(a, c), on(b, c)); });
        expect_close(a, 1e-11, "add in place" + at);
    }
}

TEST_F(CudaOpsTest, Norms) {
    const std::vector<std::vector<int64_t>> shapes = {{1, 1}, {3, 7, 63}, {5, 2048}, {130, 1152}};
    for (const auto& shape : shapes) {
        const int64_t n = shape.back();
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16}) {
            const std::string at = std::string(" weight ") + name(wt) + " rows of " + std::to_string(n);
            Pair x = rand_tensor(kF32, shape), w = rand_tensor(wt, {n}), b = rand_tensor(wt, {n});
            Pair out = tensor(kF32, shape);
            both("rms_norm", [&](bool c) { return qwen3vl_op_rms_norm(on(out, c), on(x, c), on(w, c), 1e-6f); });
            expect_close(out, 1e-11, "rms_norm" + at);
            both("layer_norm",
                 [&](bool c) { return qwen3vl_op_layer_norm(on(out, c), on(x, c), on(w, c), on(b, c), 1e-5f); });
            expect_close(out, 1e-11, "layer_norm" + at);
            Pair res = rand_tensor(kF32, shape);
            both("add_rms_norm",
                 [&](bool c) { return qwen3vl_op_add_rms_norm(on(res, c), on(out, c), on(x, c), on(w, c), 1e-6f); });
            expect_close(res, 1e-11, "add_rms_norm residual" + at);
            expect_close(out, 1e-11, "add_rms_norm out" + at);
            both("add_rms_norm in place",
                 [&](bool c) { return qwen3vl_op_add_rms_norm(on(res, c), on(x, c), on(x, c), on(w, c), 1e-6f); });
            expect_close(x, 1e-11, "add_rms_norm out = x" + at);
            both("rms_norm in place", [&](bool c) { return qwen3vl_op_rms_norm(on(x, c), on(x, c), on(w, c), 1e-6f); });
            expect_close(x, 1e-11, "rms_norm in place" + at);
        }
    }
}

TEST_F(CudaOpsTest, SoftmaxAndArgmax) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{3, 1}, {4, 1000}, {2, 3, 77}, {2, 151937}}) {
        const std::string at = " row " + std::to_string(shape.back());
        Pair x = tensor(kF32, shape, random(count(shape), -8.0f, 8.0f)), y = tensor(kF32, shape);
        both("softmax", [&](bool c) { return qwen3vl_op_softmax(on(y, c), on(x, c)); });
        expect_close(y, 1e-11, "softmax" + at);
        both("softmax in place", [&](bool c) { return qwen3vl_op_softmax(on(x, c), on(x, c)); });
        expect_close(x, 1e-11, "softmax in place" + at);
    }
    // argmax: random rows, ties (first index wins), NaN (counts as the largest), a constant row.
    const int64_t rows = 6, n = 5000;
    std::vector<float> v = random(size_t(rows * n));
    v[1 * n + 4000] = 2.0f;
    v[1 * n + 17] = 2.0f;
    v[2 * n + 3000] = std::numeric_limits<float>::quiet_NaN();
    v[2 * n + 4999] = 5.0f;
    std::fill(v.begin() + 3 * n, v.begin() + 4 * n, 0.25f);
    v[4 * n + 4999] = 3.0f;
    v[5 * n + 0] = 3.0f;
    Pair x = tensor(kF32, {rows, n}, v);
    Pair idx = ints({rows}, std::vector<int32_t>(size_t(rows), -1));
    both("argmax", [&](bool c) { return qwen3vl_op_argmax(on(idx, c), on(x, c)); });
    const std::vector<int32_t> want = read_i32(idx.cpu), got = read_i32(idx.gpu);
    EXPECT_EQ(want, got) << seed();
    EXPECT_EQ(got[1], 17);
    EXPECT_EQ(got[2], 3000);
    EXPECT_EQ(got[3], 0);
    EXPECT_EQ(got[4], 4999);
    EXPECT_EQ(got[5], 0);
}

TEST_F(CudaOpsTest, EmbeddingAndScatterRows) {
    for (qwen3vl_dtype tt : {kF32, kF16, kBF16}) {
        const int64_t vocab = 1000, width = 130, T = 17;
        Pair table = rand_tensor(tt, {vocab, width});
        std::vector<int32_t> ids(T);
        for (int32_t& id : ids) id = randint(0, vocab - 1);
        ids[0] = 0;
        ids[1] = vocab - 1;
        Pair tid = ints({T}, ids), out = tensor(kF32, {T, width});
        both("embedding", [&](bool c) { return qwen3vl_op_embedding(on(out, c), on(table, c), on(tid, c)); });
        expect_equal(out, std::string("embedding ") + name(tt));
    }
    {
        Pair table = rand_tensor(kBF16, {10, 8}), out = tensor(kF32, {2, 8});
        Pair bad = ints({2}, {3, 10});
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_op_embedding(out.gpu, table.gpu, bad.gpu));
        EXPECT_NE(std::string(qwen3vl_last_error()).find("ids[1] = 10"), std::string::npos) << qwen3vl_last_error();
    }
    const int64_t R = 50, W = 70, N = 13;
    std::vector<int32_t> perm(R);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng_);
    Pair rows = ints({N}, std::vector<int32_t>(perm.begin(), perm.begin() + N));
    for (int accumulate : {0, 1}) {
        Pair x = rand_tensor(kF32, {R, W}), src = rand_tensor(kF32, {N, W});
        both("scatter_rows",
             [&](bool c) { return qwen3vl_op_scatter_rows(on(x, c), on(rows, c), on(src, c), accumulate); });
        expect_equal(x, "scatter_rows accumulate=" + std::to_string(accumulate));
    }
    Pair x = rand_tensor(kF32, {R, W}), src = rand_tensor(kF32, {2, W}), dup = ints({2}, {4, 4});
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_op_scatter_rows(x.gpu, dup.gpu, src.gpu, 1));
}

TEST_F(CudaOpsTest, PositionEmbedding) {
    struct Case {
        int64_t side, width, gh, gw, merge;
    };
    for (const Case& k : {Case{48, 64, 16, 24, 2}, Case{48, 1152, 2, 2, 2}, Case{7, 33, 6, 10, 1}, Case{1, 5, 3, 3, 3}})
        for (qwen3vl_dtype tt : {kF32, kBF16}) {
            Pair table = rand_tensor(tt, {k.side * k.side, k.width}), out = tensor(kF32, {k.gh * k.gw, k.width});
            both("position_embedding", [&](bool c) {
                return qwen3vl_op_position_embedding(on(out, c), on(table, c), k.gh, k.gw, k.merge);
            });
            expect_close(out, 1e-12, "position_embedding grid " + std::to_string(k.gh) + "x" + std::to_string(k.gw) +
                                         " of " + std::to_string(k.side) + " " + name(tt));
        }
}

TEST_F(CudaOpsTest, QkNormRopeKv) {
    struct Case {
        int64_t T, n_past, Hq, Hkv, D;
        qwen3vl_dtype cache;
    };
    const Case cases[] = {{1, 0, 16, 8, 128, kBF16}, {5, 17, 8, 2, 128, kF32}, {33, 0, 8, 2, 64, kF16},
                          {1, 300, 4, 4, 64, kF32}, {3, 4, 6, 3, 128, kBF16}};
    for (const Case& k : cases) {
        const std::string at = " T=" + std::to_string(k.T) + " n_past=" + std::to_string(k.n_past) +
                               " D=" + std::to_string(k.D) + " cache " + name(k.cache);
        const int64_t cap = k.n_past + k.T + 3;
        const int64_t section[3] = {k.D == 128 ? 24 : 12, k.D == 128 ? 20 : 10, k.D == 128 ? 20 : 10};
        Pair q = rand_tensor(kF32, {k.T, k.Hq, k.D}), kk = rand_tensor(kF32, {k.T, k.Hkv, k.D});
        Pair v = rand_tensor(kF32, {k.T, k.Hkv, k.D});
        Pair qn = rand_tensor(kBF16, {k.D}), kn = rand_tensor(kBF16, {k.D});
        std::vector<int32_t> pos(size_t(3 * k.T));
        for (int32_t& p : pos) p = randint(0, 4095);
        Pair tp = ints({3, k.T}, pos);
        Pair kc = rand_tensor(k.cache, {cap, k.Hkv, k.D}), vc = rand_tensor(k.cache, {cap, k.Hkv, k.D});
        both("qk_norm_rope_kv", [&](bool c) {
            return qwen3vl_op_qk_norm_rope_kv(on(q, c), on(kk, c), on(v, c), on(qn, c), on(kn, c), 1e-6f, on(tp, c),
                                              5000000.0f, section, on(kc, c), on(vc, c), k.n_past);
        });
        expect_close(q, 1e-10, "q" + at);
        expect_close(kk, 1e-10, "k" + at);
        const double cache_threshold = k.cache == kF32 ? 1e-10 : 1e-8;
        expect_close(kc, cache_threshold, "k_cache" + at);
        expect_close(vc, 0.0, "v_cache" + at);  // a copy, rounded the same way on both
    }
}

TEST_F(CudaOpsTest, RopeVision) {
    for (int64_t D : {int64_t(64), int64_t(80)})
        for (int64_t T : {int64_t(1), int64_t(37)}) {
            const int64_t H = 4;
            Pair qkv = rand_tensor(kF32, {T, 3, H, D});
            std::vector<int32_t> pos(size_t(2 * T));
            for (int32_t& p : pos) p = randint(0, 99);
            Pair tp = ints({T, 2}, pos);
            both("rope_vision", [&](bool c) { return qwen3vl_op_rope_vision(on(qkv, c), on(tp, c), 10000.0f); });
            expect_close(qkv, 1e-10, "rope_vision T=" + std::to_string(T) + " D=" + std::to_string(D));
        }
}

TEST_F(CudaOpsTest, AttentionCausal) {
    struct Case {
        int64_t T, n_past, Hq, Hkv, D;
        qwen3vl_dtype cache;
    };
    const Case cases[] = {{1, 0, 4, 4, 64, kF32},    {1, 200, 16, 8, 128, kBF16}, {7, 33, 8, 2, 64, kF16},
                          {70, 0, 8, 2, 128, kF32},  {17, 100, 6, 3, 64, kBF16},  {2, 63, 2, 1, 128, kF16},
                          {1, 1000, 16, 8, 128, kF32}, {3, 5, 2, 2, 40, kF32},    {5, 700, 4, 2, 64, kF16}};
    for (const Case& k : cases) {
        const std::string at = " T=" + std::to_string(k.T) + " n_past=" + std::to_string(k.n_past) + " Hq=" +
                               std::to_string(k.Hq) + " Hkv=" + std::to_string(k.Hkv) + " D=" + std::to_string(k.D) +
                               " cache " + name(k.cache);
        const int64_t cap = k.n_past + k.T + 5;
        Pair q = rand_tensor(kF32, {k.T, k.Hq, k.D});
        Pair kc = rand_tensor(k.cache, {cap, k.Hkv, k.D}), vc = rand_tensor(k.cache, {cap, k.Hkv, k.D});
        Pair out = tensor(kF32, {k.T, k.Hq, k.D});
        both("attention", [&](bool c) {
            return qwen3vl_op_attention(on(out, c), on(q, c), on(kc, c), on(vc, c), k.n_past, QWEN3VL_ATTENTION_CAUSAL,
                                        nullptr);
        });
        expect_close(out, 1e-9, "attention causal" + at);
    }
}

TEST_F(CudaOpsTest, AttentionSegments) {
    struct Case {
        int64_t H, D;
        std::vector<int32_t> segments;
    };
    const Case cases[] = {{4, 64, {0, 16, 16, 50}}, {2, 80, {0, 130}}, {3, 64, {0, 1}}, {16, 64, {0, 64, 128, 192, 200}},
                          {1, 64, {0, 100, 130}}};  // few rows, many keys: split-K with an empty chunk
    for (const Case& k : cases) {
        const int64_t T = k.segments.back();
        Pair qkv = rand_tensor(kF32, {T, 3, k.H, k.D});
        Pair seg = ints({int64_t(k.segments.size())}, k.segments);
        Pair out = tensor(kF32, {T, k.H, k.D});
        both("attention", [&](bool c) {
            return qwen3vl_op_attention(on(out, c), on(qkv, c), nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS,
                                        on(seg, c));
        });
        expect_close(out, 1e-9, "attention segments T=" + std::to_string(T) + " H=" + std::to_string(k.H));
    }
}

class CudaLinearTest : public CudaOpsTest {
protected:
    // The tensor-core path (x rounded to the weight dtype) runs for M > 16 with bf16 on sm_80+ and f16 on sm_70+.
    double threshold(int64_t M, qwen3vl_dtype wt, bool swiglu) const {
        const bool tc = M > 16 && ((wt == kBF16 && cc_ >= 80) || (wt == kF16 && cc_ >= 70));
        return tc ? (swiglu ? 2e-5 : 1e-5) : 1e-10;
    }
};

TEST_F(CudaLinearTest, Linear) {
    struct Shape {
        int64_t K, N;
    };
    for (Shape s : {Shape{63, 37}, Shape{1536, 257}, Shape{64, 8}})
        for (int64_t M : {int64_t(1), int64_t(3), int64_t(16), int64_t(17), int64_t(130)})
            for (qwen3vl_dtype wt : {kF32, kF16, kBF16}) {
                const bool with_bias = (M + s.K) % 2 == 1;
                const std::string at = " M=" + std::to_string(M) + " K=" + std::to_string(s.K) +
                                       " N=" + std::to_string(s.N) + " " + name(wt) + (with_bias ? " bias" : "");
                Pair x = rand_tensor(kF32, {M, s.K}), w = rand_tensor(wt, {s.N, s.K});
                Pair b = rand_tensor(kBF16, {s.N}), out = tensor(kF32, {M, s.N});
                both("linear", [&](bool c) {
                    return qwen3vl_op_linear(on(out, c), on(x, c), on(w, c), with_bias ? on(b, c) : nullptr);
                });
                expect_close(out, threshold(M, wt, false), "linear" + at);
            }
}

TEST_F(CudaLinearTest, LinearWithLeadingDimsAndUnalignedViews) {
    for (int64_t M : {int64_t(3), int64_t(20)})
        for (qwen3vl_dtype wt : {kF32, kBF16}) {
            const int64_t K = 64, N = 48;
            const std::string at = " M=" + std::to_string(M) + " " + name(wt);
            Pair xb = rand_tensor(kF32, {M * K + 1}), wb = rand_tensor(wt, {N * K + 1});
            Pair x = view(xb, 1, {1, M, K}), w = view(wb, 1, {N, K});  // 4- and 2-byte aligned starts
            Pair out = tensor(kF32, {1, M, N});
            both("linear", [&](bool c) { return qwen3vl_op_linear(on(out, c), on(x, c), on(w, c), nullptr); });
            expect_close(out, threshold(M, wt, false), "linear on views" + at);
        }
}

TEST_F(CudaLinearTest, LinearModelShapes) {
    struct Case {
        int64_t M, K, N;
    };
    // q_proj decode, down_proj decode at M = 16 (x too large for shared memory), a prefill GEMM.
    for (Case k : {Case{1, 2048, 6144}, Case{16, 6144, 2048}, Case{300, 2048, 2048}}) {
        Pair x = rand_tensor(kF32, {k.M, k.K}), w = rand_tensor(kBF16, {k.N, k.K}), out = tensor(kF32, {k.M, k.N});
        both("linear", [&](bool c) { return qwen3vl_op_linear(on(out, c), on(x, c), on(w, c), nullptr); });
        expect_close(out, threshold(k.M, kBF16, false), "linear M=" + std::to_string(k.M) + " K=" +
                                                            std::to_string(k.K) + " N=" + std::to_string(k.N));
    }
}

TEST_F(CudaLinearTest, LinearSwiglu) {
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(16), int64_t(17), int64_t(130)})
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16})
            for (int64_t K : {int64_t(63), int64_t(1536)}) {
                const int64_t N = 257;
                const std::string at =
                    " M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + name(wt);
                Pair x = rand_tensor(kF32, {M, K}), g = rand_tensor(wt, {N, K}), u = rand_tensor(wt, {N, K});
                Pair out = tensor(kF32, {M, N});
                both("linear_swiglu",
                     [&](bool c) { return qwen3vl_op_linear_swiglu(on(out, c), on(x, c), on(g, c), on(u, c)); });
                expect_close(out, threshold(M, wt, true), "linear_swiglu" + at);
            }
    // gate and up of different dtypes take the unfused path.
    Pair x = rand_tensor(kF32, {3, 96}), g = rand_tensor(kF32, {40, 96}), u = rand_tensor(kBF16, {40, 96});
    Pair out = tensor(kF32, {3, 40});
    both("linear_swiglu", [&](bool c) { return qwen3vl_op_linear_swiglu(on(out, c), on(x, c), on(g, c), on(u, c)); });
    expect_close(out, 1e-10, "linear_swiglu f32 gate, bf16 up");
}

}  // namespace
