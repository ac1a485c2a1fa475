// The elementwise ops (native/core/ops.h, QWEN3VL_ELEMENTWISE_OPS): add, swiglu, gelu (tanh and erf forms). The
// suites and helpers are described in op_test_util.h.
//
// Tolerances. CPU kernels against double references: NMSE = mse(got, ref) / mse(ref, 0). An f32 result rounded once
// has NMSE ~ 1e-15; a handful of f32 roundings per element (the activations) stays below 1e-13, so 1e-12 leaves margin
// without hiding a wrong formula (> 1e-6). CUDA against the CPU: 1e-11 (fp32 ops: only ulp-level libm differences).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "elementwise.h"
#include "op_test_util.h"
#include "reference_util.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::testing;

// ---- CPU kernels ------------------------------------------------------------------------------------------------

TEST(ElementwiseOps, AddSwigluGeluMatchDoubleFormulas) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (int64_t n : {1, 17, 4097, 100003}) {
        const std::vector<float> a = rng.vec(n, -6, 6), b = rng.vec(n, -6, 6);
        std::vector<double> add(n);
        for (int64_t i = 0; i < n; ++i) add[i] = double(a[i]) + b[i];
        const std::vector<double> sw = swiglu_ref(exact(a), exact(b)).v, gt = gelu_ref(exact(a), true).v,
                                  ge = gelu_ref(exact(a), false).v;
        std::vector<float> out(n, kNaN);
        cpu::add(pool(), out.data(), a.data(), b.data(), n);
        EXPECT_LT(nmse(out, add), 1e-14) << n;
        std::fill(out.begin(), out.end(), kNaN);
        cpu::swiglu(pool(), out.data(), a.data(), b.data(), n);
        EXPECT_LT(nmse(out, sw), 1e-12) << n;
        std::vector<float> c = a;  // in place
        cpu::add(pool(), c.data(), c.data(), b.data(), n);
        EXPECT_LT(nmse(c, add), 1e-14) << n;
        // GELU's 1 + tanh(.) and 1 + erf(.) cancel for x < -4 in f32 (as in PyTorch): a lone such element has a
        // large relative error, so GELU is judged on rows of mixed values only.
        if (n == 1) continue;
        std::fill(out.begin(), out.end(), kNaN);
        cpu::gelu(pool(), out.data(), a.data(), n, true);
        EXPECT_LT(nmse(out, gt), 1e-12) << n;
        std::fill(out.begin(), out.end(), kNaN);
        cpu::gelu(pool(), out.data(), a.data(), n, false);
        EXPECT_LT(nmse(out, ge), 1e-12) << n;
    }
}

TEST(ElementwiseOps, GeluTanhAndErfDiffer) {
    // The two forms differ by ~4e-4 at x = -3: a mix-up must be visible.
    EXPECT_GT(std::fabs(cpu::gelu_tanh_f32(-3.0f) - cpu::gelu_erf_f32(-3.0f)), 2e-4f);
}

// ---- C API ------------------------------------------------------------------------------------------------------

class ElementwiseOpsCApi : public CApiOpTest {};

TEST_F(ElementwiseOpsCApi, NullTensorsAreNamed) {
    qwen3vl_tensor* x = f32({2, 8});
    EXPECT_INVALID(qwen3vl_op_add(nullptr, x, x), "qwen3vl_op_add: out is NULL");
    EXPECT_INVALID(qwen3vl_op_swiglu(x, nullptr, x), "qwen3vl_op_swiglu: gate is NULL");
    EXPECT_INVALID(qwen3vl_op_gelu(x, nullptr, 1), "qwen3vl_op_gelu: x is NULL");
}

TEST_F(ElementwiseOpsCApi, DtypesAndShapesAreChecked) {
    qwen3vl_tensor* x = f32({2, 8});
    qwen3vl_tensor* out = f32({2, 8});
    EXPECT_INVALID(qwen3vl_op_add(f32({2, 9}), x, x), "out has shape [2, 9], expected [2, 8]");
    EXPECT_INVALID(qwen3vl_op_add(out, x, f32({8, 2})), "b has shape [8, 2]");
    EXPECT_INVALID(qwen3vl_op_gelu(out, x, 2), "tanh_approximation must be 0 or 1");
}

TEST_F(ElementwiseOpsCApi, OpsRunEndToEnd) {
    qwen3vl_tensor* g = f32({1, 2}, {0.0f, 1.0f});
    ASSERT_EQ(qwen3vl_op_gelu(g, g, 0), QWEN3VL_STATUS_OK);
    EXPECT_NEAR(read(g)[1], 0.8413447, 1e-6);
    ASSERT_EQ(qwen3vl_op_swiglu(g, g, g), QWEN3VL_STATUS_OK);
    ASSERT_EQ(qwen3vl_op_add(g, g, g), QWEN3VL_STATUS_OK);
}

// ---- CUDA against the CPU ---------------------------------------------------------------------------------------

class CudaElementwiseOps : public CudaOpsTest {};

TEST_F(CudaElementwiseOps, AddSwigluGelu) {
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

}  // namespace
