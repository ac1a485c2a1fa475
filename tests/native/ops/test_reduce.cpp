// The reduction ops (native/core/ops.h, QWEN3VL_REDUCE_OPS): softmax, argmax, top_k, over the last dimension. The
// suites and helpers are described in op_test_util.h.
//
// Tolerances. softmax against a double reference: NMSE = mse(got, ref) / mse(ref, 0) <= 1e-12 (a handful of f32
// roundings per element stays below 1e-13); CUDA against the CPU: 1e-11 (only the order of the f32 sums and ulp-level
// exp differences). argmax and top_k select: exact, values bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "op_test_util.h"
#include "reduce.h"
#include "reference_util.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::testing;

// ---- CPU kernels ------------------------------------------------------------------------------------------------

TEST(ReduceOps, SoftmaxMatchesReference) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (int64_t n : {1, 2, 31, 1000, 151936}) {
        const int64_t rows = 3;
        const std::vector<float> x = rng.vec(rows * n, -20, 20);
        std::vector<double> want(x.size());
        for (int64_t r = 0; r < rows; ++r) {
            double m = -INFINITY, s = 0;
            for (int64_t i = 0; i < n; ++i) m = std::max(m, double(x[r * n + i]));
            for (int64_t i = 0; i < n; ++i) s += std::exp(x[r * n + i] - m);
            for (int64_t i = 0; i < n; ++i) want[r * n + i] = std::exp(x[r * n + i] - m) / s;
        }
        std::vector<float> out(x.size(), kNaN);
        cpu::softmax(pool(), out.data(), x.data(), rows, n);
        EXPECT_LT(nmse(out, want), 1e-12) << n;
    }
}

TEST(ReduceOps, ArgmaxTakesTheFirstOfTies) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    const int64_t rows = 5, n = 1001;
    std::vector<float> x = rng.vec(rows * n);
    std::vector<int32_t> want(rows);
    for (int64_t r = 0; r < rows; ++r) {
        const int a = rng.integer(0, n - 1), b = rng.integer(0, n - 1);
        x[r * n + a] = 7.0f;
        x[r * n + b] = 7.0f;
        want[r] = std::min(a, b);
    }
    x[4 * n + 3] = kNaN;  // torch.argmax: NaN is the maximum
    want[4] = 3;
    std::vector<int32_t> out(rows, -1);
    cpu::argmax(pool(), out.data(), x.data(), rows, n);
    EXPECT_EQ(out, want);
}

// top_k against a full std::sort of each row's indices by the documented order (NaN first, then larger value, then
// lower index; -0 == +0 as IEEE compares them): the indices must match exactly and the values bit for bit.
std::vector<int32_t> top_k_reference(const float* xr, int64_t n, int64_t k) {
    std::vector<int32_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        const float va = xr[a], vb = xr[b];
        const bool na = std::isnan(va), nb = std::isnan(vb);
        if (na != nb) return na;
        if (!na && va != vb) return va > vb;
        return a < b;
    });
    order.resize(static_cast<size_t>(k));
    return order;
}

TEST(ReduceOps, TopKMatchesASortedReference) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    const float inf = std::numeric_limits<float>::infinity();
    struct Case {
        int64_t rows, n, k;
    };
    for (Case c : {Case{3, 1, 1}, Case{2, 7, 7}, Case{4, 1000, 1}, Case{4, 1000, 37}, Case{2, 2000, 1024},
                   Case{3, 5000, 1000}, Case{2, 151936, 20}, Case{1, 151936, 1}, Case{1, 151936, 1024}}) {
        const int64_t rows = c.rows, n = c.n, k = c.k;
        SCOPED_TRACE("rows " + std::to_string(rows) + " n " + std::to_string(n) + " k " + std::to_string(k));
        std::vector<float> x = rng.vec(size_t(rows * n), -4.0f, 4.0f);
        for (int64_t r = 0; r < rows; ++r) {
            float* xr = x.data() + r * n;
            switch (r % 3) {
                case 0: break;  // distinct values
                case 1:         // many ties: a handful of distinct values
                    for (int64_t i = 0; i < n; ++i) xr[i] = std::round(xr[i] * 2.0f) / 2.0f;
                    break;
                default:  // constant, with signed zeros
                    for (int64_t i = 0; i < n; ++i) xr[i] = (i % 3 == 0) ? -0.0f : 0.0f;
                    break;
            }
            for (float special : {kNaN, -kNaN, inf, -inf, -inf, 0.0f, -0.0f, 4.0f, 4.0f})
                if (rng.integer(0, 1)) xr[rng.integer(0, int(n - 1))] = special;
        }
        std::vector<float> values(size_t(rows * k), kNaN);
        std::vector<int32_t> indices(size_t(rows * k), -1);
        cpu::top_k(pool(), values.data(), indices.data(), x.data(), rows, n, k);
        for (int64_t r = 0; r < rows; ++r) {
            const float* xr = x.data() + r * n;
            const std::vector<int32_t> want = top_k_reference(xr, n, k);
            const std::vector<int32_t> got(indices.begin() + r * k, indices.begin() + (r + 1) * k);
            ASSERT_EQ(got, want) << "row " << r;
            for (int64_t j = 0; j < k; ++j)
                ASSERT_EQ(std::memcmp(&values[size_t(r * k + j)], &xr[want[size_t(j)]], sizeof(float)), 0)
                    << "row " << r << " value " << j;
        }
    }
}

// ---- C API ------------------------------------------------------------------------------------------------------

class ReduceOpsCApi : public CApiOpTest {};

TEST_F(ReduceOpsCApi, NullTensorsAreNamed) {
    qwen3vl_tensor* x = f32({2, 8});
    EXPECT_INVALID(qwen3vl_op_softmax(x, nullptr), "qwen3vl_op_softmax: x is NULL");
    EXPECT_INVALID(qwen3vl_op_argmax(nullptr, x), "qwen3vl_op_argmax: out is NULL");
}

TEST_F(ReduceOpsCApi, DtypesAndShapesAreChecked) {
    qwen3vl_tensor* x = f32({2, 8});
    EXPECT_INVALID(qwen3vl_op_argmax(f32({2}), x), "out must be i32");
    EXPECT_INVALID(qwen3vl_op_argmax(make(QWEN3VL_DTYPE_I32, {3}), x), "out has shape [3], expected [2]");
}

TEST_F(ReduceOpsCApi, TopKArgumentsAreChecked) {
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

    // Descending, ties to the lower index, NaN first; any leading shape. The outputs start as 0 and -1, which no result
    // holds (a NaN poison would hide an unwritten NaN result).
    const float nan = std::nanf("");
    qwen3vl_tensor* logits = f32({2, 1, 5}, {0, 3, 3, -1, 2, 1, nan, 1, 7, -0.0f});
    qwen3vl_tensor* top = f32({2, 1, 3}, 0.0f);
    qwen3vl_tensor* ids = i32({2, 1, 3}, std::vector<int32_t>(6, -1));
    ASSERT_EQ(qwen3vl_op_top_k(top, ids, logits, 3), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read_i32(ids), (std::vector<int32_t>{1, 2, 4, 1, 3, 0}));
    const std::vector<float> vals = read(top);
    EXPECT_EQ(std::vector<float>(vals.begin(), vals.begin() + 3), (std::vector<float>{3, 3, 2}));
    EXPECT_TRUE(std::isnan(vals[3]));
    EXPECT_EQ(vals[4], 7.0f);
    EXPECT_EQ(vals[5], 1.0f);
    qwen3vl_tensor* one = f32({1}, kNaN);
    qwen3vl_tensor* one_id = i32({1}, {-1});
    ASSERT_EQ(qwen3vl_op_top_k(one, one_id, f32({4}, {1, 5, 2, 5}), 1), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read_i32(one_id), std::vector<int32_t>{1});
    EXPECT_EQ(read(one), std::vector<float>{5});
}

TEST_F(ReduceOpsCApi, OpsRunEndToEnd) {
    // softmax of equal logits is uniform; argmax picks the first of equal maxima.
    qwen3vl_tensor* logits = f32({2, 4}, {0, 3, 3, 1, 5, 5, 5, 5});
    qwen3vl_tensor* p = f32({2, 4}, kNaN);
    ASSERT_EQ(qwen3vl_op_softmax(p, logits), QWEN3VL_STATUS_OK);
    EXPECT_FLOAT_EQ(read(p)[5], 0.25f);
    qwen3vl_tensor* best = i32({2}, {-1, -1});
    ASSERT_EQ(qwen3vl_op_argmax(best, logits), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read_i32(best), (std::vector<int32_t>{1, 0}));
}

// ---- CUDA against the CPU ---------------------------------------------------------------------------------------

class CudaReduceOps : public CudaOpsTest {};

TEST_F(CudaReduceOps, SoftmaxAndArgmax) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{3, 1}, {4, 1000}, {2, 3, 77}, {2, 151937}}) {
        const std::string at = " row " + std::to_string(shape.back());
        Pair x = tensor(kF32, shape, random(element_count(shape), -8.0f, 8.0f)), y = tensor(kF32, shape);
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
TEST_F(CudaReduceOps, TopK) {
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

}  // namespace
