// Every op of the C API on the CUDA backend against the CPU backend, through the exported C API (the dispatch in
// capi/ops_*.cpp included), on fresh random inputs in [-1, 1]; the seed is printed with every failure. Outputs are
// poisoned with NaN before the op so unwritten elements show. Agreement is NMSE = sum (gpu - cpu)^2 / sum cpu^2:
//  - fp32 ops: 1e-11 (elementwise, norms, reductions: only the order of f32 sums and ulp-level libm differences);
//    rotary, whose cos/sin go through double on both sides: 1e-10; attention: see CudaAttentionTest;
//  - 16-bit KV cache writes: 1e-8 (a last-bit difference in f32 can flip a bf16 rounding: ~2^-8 on a few elements);
//  - linear with M > 8 on tensor cores: x is rounded to the weight dtype, a relative error of up to 2^-9 (bf16) or
//    2^-12 (f16) per element, uniform, so the NMSE of a long dot product is about (2^-9)^2 / 3 = 1.3e-6 for bf16:
//    threshold 1e-5 (2e-5 for swiglu, a product of two such results). Elsewhere linear is fp32: 1e-10.
//  - gathers, scatters and argmax: exact.
// Each case SKIPs with a message when the machine has no CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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
            // erf differs by up to 2 ulp between glibc and CUDA (CUDA's documented erff bound); for x near -4 the
            // factor 1 + erf(x / sqrt 2) ~ 6e-5 cancels, so one element can be off by ~2^-22 / 6e-5 ~ 4e-3
            // relatively. Over many elements this averages away (NMSE 1e-11 holds); a single element is compared
            // in absolute terms instead (|d| <= 1e-6, the absolute error that relative 4e-3 of gelu(-4) ~ -1.3e-4
            // allows).
            if (n < 64) {
                const std::vector<float> want = read(y.cpu), got = read(y.gpu);
                for (size_t i = 0; i < want.size(); ++i)
                    EXPECT_NEAR(got[i], want[i], 1e-6) << "gelu tanh=" << tanh_form << at << " (" << seed() << ")";
            } else {
                expect_close(y, 1e-11, "gelu tanh=" + std::to_string(tanh_form) + at);
            }
        }
        both("add in place", [&](bool c) { return qwen3vl_op_add(on(a, c), on(a, c), on(b, c)); });
        expect_close(a, 1e-11, "add in place" + at);
    }
}

TEST_F(CudaOpsTest, Norms) {
    // Row lengths for both LayerNorm kernels: the register-row one (multiples of 4 up to 8192: one, two, four or eight
    // float4s per thread, part-filled ones included) and the general one (63, 1, 8196).
    const std::vector<std::vector<int64_t>> shapes = {{1, 1},     {3, 7, 63},  {5, 2048}, {130, 1152}, {3, 12},
                                                      {33, 1024}, {9, 4096},   {2, 8192}, {2, 8196}};
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
            Pair y = tensor(kF32, shape, read(x.cpu));
            both("layer_norm in place",
                 [&](bool c) { return qwen3vl_op_layer_norm(on(y, c), on(y, c), on(w, c), on(b, c), 1e-5f); });
            expect_close(y, 1e-11, "layer_norm in place" + at);
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

    // Rows long enough to be split across blocks (the decoding logits): ties across parts, a NaN in a late part, a
    // constant row, the maximum in the last element.
    const int64_t nl = 151937;
    std::vector<float> l = random(size_t(4 * nl));
    l[0 * nl + 100000] = 7.0f;
    l[0 * nl + 5000] = 7.0f;  // first index wins across parts
    l[1 * nl + 150000] = std::numeric_limits<float>::quiet_NaN();
    l[1 * nl + 3] = 9.0f;
    std::fill(l.begin() + 2 * nl, l.begin() + 3 * nl, -0.5f);
    l[3 * nl + nl - 1] = 4.0f;
    Pair xl = tensor(kF32, {4, nl}, l);
    Pair il = ints({4}, std::vector<int32_t>(4, -1));
    both("argmax long rows", [&](bool c) { return qwen3vl_op_argmax(on(il, c), on(xl, c)); });
    const std::vector<int32_t> wl = read_i32(il.cpu), gl = read_i32(il.gpu);
    EXPECT_EQ(wl, gl) << seed();
    EXPECT_EQ(gl[0], 5000);
    EXPECT_EQ(gl[1], 150000);
    EXPECT_EQ(gl[2], 0);
    EXPECT_EQ(gl[3], int32_t(nl - 1));
}

// top_k: selection only, so the GPU must return the CPU's indices exactly and its values bit for bit, on rows split
// over many blocks (V = 151936, the decoding logits, from k = 1 to QWEN3VL_TOP_K_MAX), rows taken whole (short rows,
// or as many rows as SMs), k = V; with ties (a few distinct values, a constant row of signed zeros), NaN and +-inf.
TEST_F(CudaOpsTest, TopK) {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    struct Case {
        int64_t rows, n, k;
    };
    for (Case c : {Case{1, 151936, 20}, Case{1, 151936, 21}, Case{1, 151936, 1}, Case{1, 151936, QWEN3VL_TOP_K_MAX},
                   Case{3, 151936, 64}, Case{4, 151937, 257}, Case{2, 32500, 1000}, Case{5, 3001, 7},
                   Case{2, 1000, 1000}, Case{3, 1, 1}, Case{300, 517, 13}, Case{2, 5000, 1}}) {
        const int64_t rows = c.rows, n = c.n, k = c.k;
        const std::string at = " rows " + std::to_string(rows) + " n " + std::to_string(n) + " k " + std::to_string(k);
        std::vector<float> v = random(size_t(rows * n), -8.0f, 8.0f);
        for (int64_t r = 0; r < rows; ++r) {
            float* xr = v.data() + r * n;
            if (r % 3 == 1)
                for (int64_t i = 0; i < n; ++i) xr[i] = std::round(xr[i]);
            if (r % 3 == 2)
                for (int64_t i = 0; i < n; ++i) xr[i] = i % 2 ? 0.0f : -0.0f;
            for (float special : {nan, -nan, inf, -inf, -inf, 8.0f, 8.0f})
                if (randint(0, 1)) xr[randint(0, int32_t(n - 1))] = special;
        }
        Pair x = tensor(kF32, {rows, n}, v);
        Pair values = tensor(kF32, {rows, k});
        Pair indices = ints({rows, k}, std::vector<int32_t>(size_t(rows * k), -1));
        both("top_k", [&](bool cpu) { return qwen3vl_op_top_k(on(values, cpu), on(indices, cpu), on(x, cpu), k); });
        EXPECT_EQ(read_i32(indices.cpu), read_i32(indices.gpu)) << "top_k indices" << at << " (" << seed() << ")";
        const std::vector<float> want = read(values.cpu), got = read(values.gpu);
        EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
            << "top_k values" << at << " (" << seed() << ")";
    }
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
        // Checked on the device: the op is queued, the bad row zeroed, and the next read reports the error once.
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_op_embedding(out.gpu, table.gpu, bad.gpu)) << qwen3vl_last_error();
        std::vector<float> got(16, 1.0f);
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
                  qwen3vl_tensor_read(out.gpu, kF32, got.data(), got.size() * sizeof(float)));
        EXPECT_NE(std::string(qwen3vl_last_error()).find("token id was outside the table"), std::string::npos)
            << qwen3vl_last_error();
        for (int c = 8; c < 16; ++c) EXPECT_EQ(got[size_t(c)], 0.0f) << "row of the bad id, column " << c - 8;
        EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(out.gpu, kF32, got.data(), got.size() * sizeof(float)))
            << "the error is reported once: " << qwen3vl_last_error();
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
    // Bad rows are checked on the device (no host round trip, capturable): the op is queued and the next read
    // reports the error once; rows outside x are skipped, so nothing outside x is written.
    Pair x = rand_tensor(kF32, {R, W}), src = rand_tensor(kF32, {2, W});
    for (const std::vector<int32_t>& bad : {std::vector<int32_t>{4, 4}, std::vector<int32_t>{3, int32_t(R)},
                                            std::vector<int32_t>{-1, 2}}) {
        Pair rows_bad = ints({2}, bad);
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_op_scatter_rows(x.gpu, rows_bad.gpu, src.gpu, 1)) << qwen3vl_last_error();
        std::vector<float> got(size_t(R * W));
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
                  qwen3vl_tensor_read(x.gpu, kF32, got.data(), got.size() * sizeof(float)));
        EXPECT_NE(std::string(qwen3vl_last_error()).find("qwen3vl_op_scatter_rows"), std::string::npos)
            << qwen3vl_last_error();
        EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(x.gpu, kF32, got.data(), got.size() * sizeof(float)))
            << "the error is reported once: " << qwen3vl_last_error();
    }
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
                                              5000000.0f, section, on(kc, c), on(vc, c), k.n_past, nullptr);
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
class CudaAttentionTest : public CudaOpsTest {
protected:
    bool fp32_ = false;

    struct Causal {
        int64_t T, n_past, Hq, Hkv, D;
        qwen3vl_dtype cache;
        float q_range;  // q uniform in [-q_range, q_range]: > 1 sharpens the softmax
    };

    std::string describe(const Causal& k) const {
        return " T=" + std::to_string(k.T) + " n_past=" + std::to_string(k.n_past) + " Hq=" + std::to_string(k.Hq) +
               " Hkv=" + std::to_string(k.Hkv) + " D=" + std::to_string(k.D) + " cache " + name(k.cache) +
               (k.q_range != 1.0f ? " q range " + std::to_string(k.q_range) : std::string()) +
               (fp32_ ? " (fp32_math)" : "");
    }

    // Random cache rows, NaN from row `valid` on.
    std::vector<float> cache_values(int64_t rows, int64_t valid, int64_t width) {
        std::vector<float> v = random(size_t(rows * width));
        std::fill(v.begin() + valid * width, v.end(), std::numeric_limits<float>::quiet_NaN());
        return v;
    }
    void write_both(const Pair& p, const std::vector<float>& v) {
        for (qwen3vl_tensor* t : {p.cpu, p.gpu})
            check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4), "tensor_write");
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
        const double e = nmse(ref, got);
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
            return qwen3vl_op_attention(on(out, c), on(q, c), on(kc, c), on(vc, c), k.n_past, QWEN3VL_ATTENTION_CAUSAL,
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
            return qwen3vl_op_attention(on(out, c), on(qkv, c), nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS,
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
            check(qwen3vl_op_attention(out.cpu, q.cpu, kc.cpu, vc.cpu, n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr,
                                       nullptr),
                  "attention on the CPU");
            check(qwen3vl_op_attention(out.gpu, q.gpu, kc.gpu, vc.gpu, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np.gpu),
                  "attention on CUDA, n_past_tensor");
            check(qwen3vl_op_attention(direct.gpu, q.gpu, kc.gpu, vc.gpu, n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr,
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
    // CPU's (as in QkNormRopeKv). Cache rows from n_past on start as NaN: the op must write its T rows, and a row it
    // reads before writing would poison the output.
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
            return qwen3vl_op_qk_norm_rope_attention(on(out, c), on(q, c), on(kk, c), on(v, c), on(qn, c), on(kn, c),
                                                     1e-6f, on(tp, c), 5000000.0f, section, on(kc, c), on(vc, c), n_arg,
                                                     n_past_on_device ? on(np, c) : nullptr);
        });
        const qwen3vl_tensor* npt = n_past_on_device ? np.gpu : nullptr;
        check(qwen3vl_op_qk_norm_rope_kv(q2.gpu, k2.gpu, v.gpu, qn.gpu, kn.gpu, 1e-6f, tp.gpu, 5000000.0f, section,
                                         kc2.gpu, vc2.gpu, n_arg, npt),
              "qk_norm_rope_kv on CUDA");
        check(qwen3vl_op_attention(out2.gpu, q2.gpu, kc2.gpu, vc2.gpu, n_arg, QWEN3VL_ATTENTION_CAUSAL, nullptr, npt),
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
            EXPECT_LE(nmse(ref_rows, got_rows), k.cache == kF32 ? 1e-10 : 1e-8)
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
                                {3, 64, 8, 8, 64, kF32, 1.0f},     {65, 100, 16, 8, 128, kBF16, 1.0f}};
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
                        for (qwen3vl_dtype cache : {kF32, kBF16}) {
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
                               {130, 37, 4, 4, 88, kF16, 1.0f},     {64, 0, 2, 1, 120, kF32, 1.0f}};
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
    }
};

// The same cases with every kernel in fp32 (the decode kernel and the scalar fallback).
class CudaAttentionFp32Test : public CudaAttentionTest {
protected:
    void SetUp() override {
        CudaAttentionTest::SetUp();
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

TEST_F(CudaAttentionTest, Causal) { causal_cases(); }
TEST_F(CudaAttentionTest, Segments) { segment_cases(); }
TEST_F(CudaAttentionTest, NPastTensor) { n_past_tensor_cases(); }
TEST_F(CudaAttentionTest, QkNormRopeAttention) { rope_attention_cases(); }
TEST_F(CudaAttentionFp32Test, Causal) { causal_cases(); }
TEST_F(CudaAttentionFp32Test, Segments) { segment_cases(); }
TEST_F(CudaAttentionFp32Test, NPastTensor) { n_past_tensor_cases(); }
TEST_F(CudaAttentionFp32Test, QkNormRopeAttention) { rope_attention_cases(); }

class CudaLinearTest : public CudaOpsTest {
protected:
    // The tensor-core path (x rounded to the weight dtype) runs for M > 8 (kGemvMaxRows) with bf16 on sm_80+ and f16
    // on sm_70+. Up to M = 8 the GEMV accumulates in fp32 like the CPU: only the summation order differs (and, with a
    // norm, its sum of squares: f32 on the GPU, double on the CPU, ~1 ulp on the scale), NMSE ~ K u^2 ~ 1e-13.
    double threshold(int64_t M, qwen3vl_dtype wt, bool swiglu) const {
        const bool tc = M > 8 && ((wt == kBF16 && cc_ >= 80) || (wt == kF16 && cc_ >= 70));
        return tc ? (swiglu ? 2e-5 : 1e-5) : 1e-10;
    }

    // A bf16 tensor of uniform values in [-1, 1) from a fast generator, written as bf16 (the model-sized weights:
    // 311M elements for lm_head, too many for f32 staging and mt19937).
    Pair big_bf16(const std::vector<int64_t>& shape) {
        std::vector<uint16_t> bits(count(shape));
        uint64_t s = (uint64_t(rng_()) << 32) | rng_() | 1u;
        for (uint16_t& b : bits) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            const float f = float(int32_t(s >> 32)) * (1.0f / 2147483648.0f);
            uint32_t u;
            std::memcpy(&u, &f, 4);
            b = uint16_t(u >> 16);  // truncation: exactly representable, still in [-1, 1)
        }
        Pair p{create(cpu_, kBF16, shape), create(gpu_, kBF16, shape)};
        for (qwen3vl_tensor* t : {p.cpu, p.gpu})
            check(qwen3vl_tensor_write(t, kBF16, bits.data(), bits.size() * 2), "tensor_write");
        return p;
    }
};

TEST_F(CudaLinearTest, Linear) {
    struct Shape {
        int64_t K, N;
    };
    for (Shape s : {Shape{63, 37}, Shape{1536, 257}, Shape{64, 8}, Shape{2050, 40}})
        for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(130)})
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
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(20)})
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
    // gate decode, down_proj decode at M = 8 (x 192 KiB of shared memory: past the default 48 KiB), x too large for
    // shared memory (8 x 8192: read from global memory), a prefill GEMM.
    for (Case k : {Case{1, 2048, 6144}, Case{8, 6144, 2048}, Case{8, 8192, 300}, Case{300, 2048, 2048}}) {
        Pair x = rand_tensor(kF32, {k.M, k.K}), w = rand_tensor(kBF16, {k.N, k.K}), out = tensor(kF32, {k.M, k.N});
        both("linear", [&](bool c) { return qwen3vl_op_linear(on(out, c), on(x, c), on(w, c), nullptr); });
        expect_close(out, threshold(k.M, kBF16, false), "linear M=" + std::to_string(k.M) + " K=" +
                                                            std::to_string(k.K) + " N=" + std::to_string(k.N));
    }
}

TEST_F(CudaLinearTest, LinearSwiglu) {
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(130)})
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

// The fused ops against the CPU backend (which composes the unfused kernels): odd K (scalar kernel: rows not 16-byte
// aligned), segment sizes that are no multiple of the kernel's tile rows (tiles straddle two weights), mixed dtypes
// (no single launch), unaligned views.
TEST_F(CudaLinearTest, NormLinear) {
    const int64_t Ns[3] = {50, 16, 33};
    size_t case_index = 0;
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(64)})
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16})
            for (int64_t K : {int64_t(64), int64_t(1000), int64_t(2050)})
                for (int count = 1; count <= 3; ++count) {
                    const bool with_norm = case_index % 4 != 3, mixed = case_index % 5 == 4;
                    const qwen3vl_dtype nt = case_index % 3 == 0 ? kF32 : kBF16;
                    ++case_index;
                    const std::string at = " M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + name(wt) +
                                           " x" + std::to_string(count) + (with_norm ? " norm" : "") +
                                           (mixed ? " mixed dtypes" : "");
                    Pair x = rand_tensor(kF32, {M, K}), nw = rand_tensor(nt, {K});
                    std::vector<Pair> w, out;
                    for (int i = 0; i < count; ++i) {
                        w.push_back(rand_tensor(mixed && i == 1 ? kF32 : wt, {Ns[i], K}));
                        out.push_back(tensor(kF32, {M, Ns[i]}));
                    }
                    both("norm_linear", [&](bool c) {
                        auto o = [&](int i) { return i < count ? on(out[size_t(i)], c) : nullptr; };
                        auto ww = [&](int i) { return i < count ? on(w[size_t(i)], c) : nullptr; };
                        return qwen3vl_op_norm_linear(o(0), ww(0), o(1), ww(1), o(2), ww(2), on(x, c),
                                                      with_norm ? on(nw, c) : nullptr, 1e-6f);
                    });
                    for (int i = 0; i < count; ++i)
                        expect_close(out[size_t(i)], threshold(M, mixed && i == 1 ? kF32 : wt, false),
                                     "norm_linear out" + std::to_string(i) + at);
                }
}

TEST_F(CudaLinearTest, NormLinearSwiglu) {
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(64)})
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16})
            for (int64_t K : {int64_t(64), int64_t(1000), int64_t(2050)})
                for (bool with_norm : {true, false}) {
                    const int64_t N = 45;
                    const std::string at = " M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + name(wt) +
                                           (with_norm ? " norm" : "");
                    Pair x = rand_tensor(kF32, {M, K}), nw = rand_tensor(kBF16, {K});
                    Pair g = rand_tensor(wt, {N, K}), u = rand_tensor(wt, {N, K}), out = tensor(kF32, {M, N});
                    both("norm_linear_swiglu", [&](bool c) {
                        return qwen3vl_op_norm_linear_swiglu(on(out, c), on(x, c), with_norm ? on(nw, c) : nullptr,
                                                             1e-6f, on(g, c), on(u, c));
                    });
                    expect_close(out, threshold(M, wt, true), "norm_linear_swiglu" + at);
                }
}

TEST_F(CudaLinearTest, LinearResidual) {
    size_t case_index = 0;
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(64)})
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16})
            for (int64_t K : {int64_t(64), int64_t(1000), int64_t(2050)}) {
                const int64_t N = 70;
                const bool in_place = case_index % 2 == 0, with_bias = case_index % 3 == 0;
                ++case_index;
                const std::string at = " M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + name(wt) +
                                       (in_place ? " in place" : "") + (with_bias ? " bias" : "");
                Pair x = rand_tensor(kF32, {M, K}), w = rand_tensor(wt, {N, K}), b = rand_tensor(kF16, {N});
                Pair res = rand_tensor(kF32, {M, N}), out = in_place ? res : tensor(kF32, {M, N});
                both("linear_residual", [&](bool c) {
                    return qwen3vl_op_linear_residual(on(out, c), on(x, c), on(w, c), with_bias ? on(b, c) : nullptr,
                                                      on(res, c));
                });
                expect_close(out, threshold(M, wt, false), "linear_residual" + at);
            }
}

TEST_F(CudaLinearTest, FusedOnUnalignedViews) {
    for (int64_t M : {int64_t(1), int64_t(5), int64_t(20)})
        for (qwen3vl_dtype wt : {kF32, kBF16}) {
            const int64_t K = 128, N = 40;
            const std::string at = " M=" + std::to_string(M) + " " + name(wt);
            Pair xb = rand_tensor(kF32, {M * K + 1}), wb = rand_tensor(wt, {2 * N * K + 1});
            Pair x = view(xb, 1, {M, K}), w0 = view(wb, 1, {N, K}), w1 = view(wb, 1 + N * K, {N, K});
            Pair nb = rand_tensor(wt, {K + 1}), nw = view(nb, 1, {K});
            Pair o0 = tensor(kF32, {M, N}), o1 = tensor(kF32, {M, N});
            both("norm_linear", [&](bool c) {
                return qwen3vl_op_norm_linear(on(o0, c), on(w0, c), on(o1, c), on(w1, c), nullptr, nullptr, on(x, c),
                                              on(nw, c), 1e-6f);
            });
            expect_close(o0, threshold(M, wt, false), "norm_linear on views out0" + at);
            expect_close(o1, threshold(M, wt, false), "norm_linear on views out1" + at);
            both("norm_linear_swiglu", [&](bool c) {
                return qwen3vl_op_norm_linear_swiglu(on(o0, c), on(x, c), on(nw, c), 1e-6f, on(w0, c), on(w1, c));
            });
            expect_close(o0, threshold(M, wt, true), "norm_linear_swiglu on views" + at);
            Pair rb = rand_tensor(kF32, {M * N + 1}), res = view(rb, 1, {M, N});
            both("linear_residual", [&](bool c) {
                return qwen3vl_op_linear_residual(on(res, c), on(x, c), on(w0, c), nullptr, on(res, c));
            });
            expect_close(res, threshold(M, wt, false), "linear_residual on views" + at);
        }
}

// The decode step of Qwen3-VL-2B: q/k/v of a layer in one launch, the MLP's norm + gate/up, down_proj and o_proj
// with the residual, the final norm + lm_head; then x too large for shared memory with a norm (normalised in a
// separate pass), and a prefill-sized M on the tensor cores.
TEST_F(CudaLinearTest, FusedModelShapes) {
    {
        Pair x = rand_tensor(kF32, {1, 2048}), nw = rand_tensor(kBF16, {2048});
        Pair wq = big_bf16({2048, 2048}), wk = big_bf16({1024, 2048}), wv = big_bf16({1024, 2048});
        Pair q = tensor(kF32, {1, 2048}), k = tensor(kF32, {1, 1024}), v = tensor(kF32, {1, 1024});
        both("norm_linear", [&](bool c) {
            return qwen3vl_op_norm_linear(on(q, c), on(wq, c), on(k, c), on(wk, c), on(v, c), on(wv, c), on(x, c),
                                          on(nw, c), 1e-6f);
        });
        expect_close(q, 1e-10, "q_proj");
        expect_close(k, 1e-10, "k_proj");
        expect_close(v, 1e-10, "v_proj");
    }
    for (int64_t M : {int64_t(1), int64_t(8)}) {
        const std::string at = " M=" + std::to_string(M);
        Pair x = rand_tensor(kF32, {M, 2048}), nw = rand_tensor(kBF16, {2048});
        Pair g = big_bf16({6144, 2048}), u = big_bf16({6144, 2048}), h = tensor(kF32, {M, 6144});
        both("norm_linear_swiglu", [&](bool c) {
            return qwen3vl_op_norm_linear_swiglu(on(h, c), on(x, c), on(nw, c), 1e-6f, on(g, c), on(u, c));
        });
        expect_close(h, 1e-10, "gate/up swiglu" + at);
        Pair wd = big_bf16({2048, 6144}), res = rand_tensor(kF32, {M, 2048});
        both("linear_residual", [&](bool c) {
            return qwen3vl_op_linear_residual(on(res, c), on(h, c), on(wd, c), nullptr, on(res, c));
        });
        expect_close(res, 1e-10, "down_proj + residual" + at);
        Pair wo = big_bf16({2048, 2048});
        both("linear_residual", [&](bool c) {
            return qwen3vl_op_linear_residual(on(res, c), on(x, c), on(wo, c), nullptr, on(res, c));
        });
        expect_close(res, 1e-10, "o_proj + residual" + at);
    }
    {
        Pair x = rand_tensor(kF32, {1, 2048}), nw = rand_tensor(kBF16, {2048});
        Pair w = big_bf16({151936, 2048}), logits = tensor(kF32, {1, 151936});
        both("norm_linear", [&](bool c) {
            return qwen3vl_op_norm_linear(on(logits, c), on(w, c), nullptr, nullptr, nullptr, nullptr, on(x, c),
                                          on(nw, c), 1e-6f);
        });
        expect_close(logits, 1e-10, "final norm + lm_head");
    }
    {
        Pair x = rand_tensor(kF32, {7, 8192}), nw = rand_tensor(kBF16, {8192});
        Pair w0 = big_bf16({300, 8192}), w1 = big_bf16({77, 8192});
        Pair o0 = tensor(kF32, {7, 300}), o1 = tensor(kF32, {7, 77});
        both("norm_linear", [&](bool c) {
            return qwen3vl_op_norm_linear(on(o0, c), on(w0, c), on(o1, c), on(w1, c), nullptr, nullptr, on(x, c),
                                          on(nw, c), 1e-6f);
        });
        expect_close(o0, 1e-10, "norm_linear M=7 K=8192 out0");
        expect_close(o1, 1e-10, "norm_linear M=7 K=8192 out1");
    }
    {
        Pair x = rand_tensor(kF32, {300, 2048}), nw = rand_tensor(kBF16, {2048});
        Pair wq = big_bf16({2048, 2048}), wk = big_bf16({1024, 2048});
        Pair q = tensor(kF32, {300, 2048}), k = tensor(kF32, {300, 1024});
        both("norm_linear", [&](bool c) {
            return qwen3vl_op_norm_linear(on(q, c), on(wq, c), on(k, c), on(wk, c), nullptr, nullptr, on(x, c),
                                          on(nw, c), 1e-6f);
        });
        expect_close(q, threshold(300, kBF16, false), "prefill q_proj");
        expect_close(k, threshold(300, kBF16, false), "prefill k_proj");
        Pair res = rand_tensor(kF32, {300, 2048});
        both("linear_residual", [&](bool c) {
            return qwen3vl_op_linear_residual(on(res, c), on(q, c), on(wq, c), nullptr, on(res, c));
        });
        expect_close(res, threshold(300, kBF16, false), "prefill o_proj + residual");
    }
}

// The vision ops against the CPU backend (the unfused sequence). Above 8 rows the GPU takes cuBLASLt with the bias,
// the tanh GELU and the residual in its epilogue, the LayerNorm writing the GEMM's 16-bit input, and (both MLP
// weights of one 16-bit dtype) the MLP's intermediate kept in that dtype. Tolerances as for linear (threshold()):
// the LayerNorm's 16-bit output is the same rounding as that of x; GELU has |gelu'| <= 1.13 and shrinks a negative
// input's error as it shrinks the value, so it keeps the NMSE of its input. The MLP rounds x (or the LayerNorm) and
// the intermediate, two independent 2^-9 roundings: 2e-5 as for swiglu. cuBLASLt's GELU (the tanh form above 8 rows)
// may evaluate tanh with the hardware approximation (tanh.approx.f32, relative error up to 2^-11): an error of at
// most 0.5 |x| 2^-11 per element, also where gelu(x) ~ 0 (x < 0), so NMSE <= (2^-12)^2 sum x^2 / sum gelu(x)^2 ~
// 1.5e-7 if every element had the largest error: those fp32 cases allow 5e-7 instead of 1e-10.
double with_epilogue_gelu(double threshold, int64_t M, int tanh_form) {
    return tanh_form && M > 8 ? std::max(threshold, 5e-7) : threshold;
}

TEST_F(CudaLinearTest, LinearGelu) {
    size_t case_index = 0;
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(130)})
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16})
            for (int64_t K : {int64_t(63), int64_t(1024)})
                for (int tanh_form : {0, 1}) {
                    const int64_t N = 257;
                    const qwen3vl_dtype bt = case_index % 3 == 0 ? kF32 : case_index % 3 == 1 ? kF16 : kBF16;
                    const bool with_bias = case_index % 5 != 4, unaligned_bias = case_index % 7 == 3;
                    ++case_index;
                    const std::string at = " M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + name(wt) +
                                           " tanh=" + std::to_string(tanh_form) +
                                           (with_bias ? std::string(" bias ") + name(bt) : "") +
                                           (unaligned_bias ? " unaligned" : "");
                    Pair x = rand_tensor(kF32, {M, K}), w = rand_tensor(wt, {N, K});
                    Pair bb = rand_tensor(bt, {N + 1}), b = view(bb, unaligned_bias ? 1 : 0, {N});
                    Pair out = tensor(kF32, {M, N});
                    both("linear_gelu", [&](bool c) {
                        return qwen3vl_op_linear_gelu(on(out, c), on(x, c), on(w, c), with_bias ? on(b, c) : nullptr,
                                                      tanh_form);
                    });
                    expect_close(out, with_epilogue_gelu(threshold(M, wt, false), M, tanh_form), "linear_gelu" + at);
                }
}

TEST_F(CudaLinearTest, LayerNormLinear) {
    size_t case_index = 0;
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(64), int64_t(130)})
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16})
            for (int64_t K : {int64_t(64), int64_t(1000), int64_t(2050)}) {
                const int64_t N = 70;
                const qwen3vl_dtype nt = case_index % 2 ? kF32 : kBF16;
                const bool with_bias = case_index % 3 != 2;
                ++case_index;
                const std::string at = " M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + name(wt) +
                                       " norm " + name(nt) + (with_bias ? " bias" : "");
                Pair x = rand_tensor(kF32, {M, K}), nw = rand_tensor(nt, {K}), nb = rand_tensor(nt, {K});
                Pair w = rand_tensor(wt, {N, K}), b = rand_tensor(kBF16, {N}), out = tensor(kF32, {M, N});
                both("layer_norm_linear", [&](bool c) {
                    return qwen3vl_op_layer_norm_linear(on(out, c), on(x, c), on(nw, c), on(nb, c), 1e-6f, on(w, c),
                                                        with_bias ? on(b, c) : nullptr);
                });
                expect_close(out, threshold(M, wt, false), "layer_norm_linear" + at);
            }
}

TEST_F(CudaLinearTest, MlpGelu) {
    struct Weights {
        qwen3vl_dtype fc1, fc2;
    };
    size_t case_index = 0;
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(64), int64_t(130)})
        for (Weights wd : {Weights{kBF16, kBF16}, Weights{kF16, kF16}, Weights{kF32, kF32}, Weights{kBF16, kF16}})
            for (int tanh_form : {0, 1}) {
                const int64_t K = 96, I = 200;
                const bool with_norm = case_index % 3 != 2, with_residual = case_index % 4 != 1;
                const bool in_place = with_residual && case_index % 2 == 0, with_biases = case_index % 5 != 4;
                ++case_index;
                const int64_t N = in_place ? K : 72;
                const std::string at = " M=" + std::to_string(M) + " " + name(wd.fc1) + "/" + name(wd.fc2) +
                                       " tanh=" + std::to_string(tanh_form) + (with_norm ? " norm" : "") +
                                       (with_residual ? " residual" : "") + (in_place ? " in place" : "") +
                                       (with_biases ? " biases" : "");
                Pair x = rand_tensor(kF32, {M, K}), nw = rand_tensor(kBF16, {K}), nb = rand_tensor(kBF16, {K});
                Pair w1 = rand_tensor(wd.fc1, {I, K}), b1 = rand_tensor(wd.fc1, {I});
                Pair w2 = rand_tensor(wd.fc2, {N, I}), b2 = rand_tensor(kF32, {N});
                // In place: the vision block's x += mlp(norm2(x)), out = residual = x.
                Pair res = in_place ? x : rand_tensor(kF32, {M, N}), out = in_place ? x : tensor(kF32, {M, N});
                both("mlp_gelu", [&](bool c) {
                    return qwen3vl_op_mlp_gelu(on(out, c), on(x, c), with_norm ? on(nw, c) : nullptr,
                                               with_norm ? on(nb, c) : nullptr, 1e-6f, on(w1, c),
                                               with_biases ? on(b1, c) : nullptr, tanh_form, on(w2, c),
                                               with_biases ? on(b2, c) : nullptr, with_residual ? on(res, c) : nullptr);
                });
                const double t = std::max(threshold(M, wd.fc1, true), threshold(M, wd.fc2, true));
                expect_close(out, with_epilogue_gelu(t, M, tanh_form), "mlp_gelu" + at);
            }
}

// The 2B vision block's shapes for a 512x512 image (1024 patches, hidden 1024, intermediate 4096, bf16 weights and
// biases), each op on fresh inputs, then a DeepStack merger's (LayerNorm over 4 x 1024, erf GELU, out 2048).
TEST_F(CudaLinearTest, VisionModelShapes) {
    const int64_t T = 1024, hidden = 1024, inter = 4096;
    Pair nw = rand_tensor(kBF16, {hidden}), nb = rand_tensor(kBF16, {hidden});
    {
        Pair x = rand_tensor(kF32, {T, hidden}), qkv = tensor(kF32, {T, 3 * hidden});
        Pair w = big_bf16({3 * hidden, hidden}), b = rand_tensor(kBF16, {3 * hidden});
        both("layer_norm_linear", [&](bool c) {
            return qwen3vl_op_layer_norm_linear(on(qkv, c), on(x, c), on(nw, c), on(nb, c), 1e-6f, on(w, c), on(b, c));
        });
        expect_close(qkv, threshold(T, kBF16, false), "norm1 + qkv");
    }
    {
        Pair x = rand_tensor(kF32, {T, hidden}), attn = rand_tensor(kF32, {T, hidden});
        Pair w = big_bf16({hidden, hidden}), b = rand_tensor(kBF16, {hidden});
        both("linear_residual", [&](bool c) {
            return qwen3vl_op_linear_residual(on(x, c), on(attn, c), on(w, c), on(b, c), on(x, c));
        });
        expect_close(x, threshold(T, kBF16, false), "proj + residual");
    }
    {
        Pair x = rand_tensor(kF32, {T, hidden});
        Pair w1 = big_bf16({inter, hidden}), b1 = rand_tensor(kBF16, {inter});
        Pair w2 = big_bf16({hidden, inter}), b2 = rand_tensor(kBF16, {hidden});
        both("mlp_gelu", [&](bool c) {
            return qwen3vl_op_mlp_gelu(on(x, c), on(x, c), on(nw, c), on(nb, c), 1e-6f, on(w1, c), on(b1, c), 1,
                                       on(w2, c), on(b2, c), on(x, c));
        });
        expect_close(x, threshold(T, kBF16, true), "norm2 + mlp + residual");
    }
    {
        const int64_t merged = 4 * hidden, out_hidden = 2048;
        Pair x = rand_tensor(kF32, {T / 4, merged});
        Pair mnw = rand_tensor(kBF16, {merged}), mnb = rand_tensor(kBF16, {merged});
        Pair w1 = big_bf16({merged, merged}), b1 = rand_tensor(kBF16, {merged});
        Pair w2 = big_bf16({out_hidden, merged}), b2 = rand_tensor(kBF16, {out_hidden});
        Pair features = tensor(kF32, {T / 4, out_hidden});
        both("mlp_gelu", [&](bool c) {
            return qwen3vl_op_mlp_gelu(on(features, c), on(x, c), on(mnw, c), on(mnb, c), 1e-6f, on(w1, c), on(b1, c),
                                       0, on(w2, c), on(b2, c), nullptr);
        });
        expect_close(features, threshold(T / 4, kBF16, true), "DeepStack merger");
    }
}

}  // namespace
