// The norm ops (native/core/ops.h, QWEN3VL_NORM_OPS): rms_norm, add_rms_norm, layer_norm, over the last dimension,
// weights (and LayerNorm's bias) in every weight dtype. The suites and helpers are described in op_test_util.h; the
// double references (rms_norm_ref, layer_norm_ref) are in reference_util.h, shared with the fused ops that contain a
// norm.
//
// Tolerances. CPU kernels against double references: NMSE = mse(got, ref) / mse(ref, 0). An f32 result rounded once
// has NMSE ~ 1e-15; a handful of f32 roundings per element (the norms) stays below 1e-13, so 1e-12 leaves margin
// without hiding a wrong formula (a wrong eps or a missing weight gives > 1e-6); LayerNorm: see its test. CUDA
// against the CPU: 1e-11 (fp32 ops: only the order of the f32 sums differs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "norm.h"
#include "op_test_util.h"
#include "reference_util.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::testing;

// ---- CPU kernels ------------------------------------------------------------------------------------------------

TEST(NormOps, RmsNormMatchesReference) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (qwen3vl_dtype wt : kWeightDtypes)
            for (int64_t n : {1, 7, 16, 128, 2048, 2051})
                for (int64_t rows : {1, 3, 33}) {
                    SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " " + dtype_name(wt) + " n=" +
                                 std::to_string(n) + " rows=" + std::to_string(rows));
                    const std::vector<float> x = rng.vec(rows * n, -3, 3);
                    const Stored w = make_stored(rng, wt, n, 0, 0.5f, 1.5f);
                    const auto want = rms_norm_ref(x, w.values, rows, n, 1e-6f).v;
                    std::vector<float> out(x.size(), kNaN);
                    cpu::rms_norm(pool(), out.data(), x.data(), w.data(), wt, rows, n, 1e-6f, k);
                    EXPECT_LT(nmse(out, want), 1e-12);
                    std::vector<float> inplace = x;
                    cpu::rms_norm(pool(), inplace.data(), inplace.data(), w.data(), wt, rows, n, 1e-6f, k);
                    EXPECT_LT(nmse(inplace, want), 1e-12);
                }
}

TEST(NormOps, EpsIsAddedInsideTheRoot) {
    // A row of tiny values: with eps 1e-6 the output is x / sqrt(x^2 + eps), far from sign(x).
    const std::vector<float> x(64, 1e-4f);
    const std::vector<float> w(64, 1.0f);
    for (CpuKernels k : kernel_sets()) {
        std::vector<float> out(64, kNaN);
        cpu::rms_norm(pool(), out.data(), x.data(), w.data(), QWEN3VL_DTYPE_F32, 1, 64, 1e-6f, k);
        EXPECT_NEAR(out[0], 1e-4 / std::sqrt(1e-8 + 1e-6), 1e-6);
    }
}

TEST(NormOps, AddRmsNormUpdatesResidualAndNormalises) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (qwen3vl_dtype wt : kWeightDtypes)
            for (int64_t n : {5, 16, 2048, 2053}) {
                SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " " + dtype_name(wt) + " n=" + std::to_string(n));
                const int64_t rows = 9;
                const std::vector<float> res0 = rng.vec(rows * n, -2, 2), x = rng.vec(rows * n, -2, 2);
                const Stored w = make_stored(rng, wt, n);
                std::vector<float> sum(res0.size());
                std::vector<double> sum_ref(res0.size());
                for (size_t i = 0; i < sum.size(); ++i) {
                    sum[i] = res0[i] + x[i];
                    sum_ref[i] = sum[i];
                }
                const auto want = rms_norm_ref(sum, w.values, rows, n, 1e-6f).v;
                std::vector<float> res = res0, out(res0.size(), kNaN);
                cpu::add_rms_norm(pool(), res.data(), out.data(), x.data(), w.data(), wt, rows, n, 1e-6f, k);
                EXPECT_EQ(nmse(res, sum_ref), 0.0);
                EXPECT_LT(nmse(out, want), 1e-12);
                std::vector<float> res2 = res0, x2 = x;  // out may be x
                cpu::add_rms_norm(pool(), res2.data(), x2.data(), x2.data(), w.data(), wt, rows, n, 1e-6f, k);
                EXPECT_LT(nmse(x2, want), 1e-12);
            }
}

TEST(NormOps, LayerNormMatchesReference) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (qwen3vl_dtype wt : kWeightDtypes)
            for (int64_t n : {1, 3, 64, 1024, 1029}) {
                SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " " + dtype_name(wt) + " n=" + std::to_string(n));
                const int64_t rows = 7;
                // Offset mean: the variance must be taken about the mean (a one-pass E[x^2] - E[x]^2 loses digits).
                const std::vector<float> x = rng.vec(rows * n, 2, 5);
                const Stored w = make_stored(rng, wt, n), b = make_stored(rng, wt, n);
                const std::vector<double> want = layer_norm_ref(x, w.values, b.values, rows, n, 1e-6f).v;
                double cond = 0;  // the worst row's (mean / std)^2: how much (x - mean) amplifies x's rounding
                for (int64_t r = 0; r < rows; ++r) {
                    double mean = 0, var = 0;
                    for (int64_t i = 0; i < n; ++i) mean += x[r * n + i];
                    mean /= n;
                    for (int64_t i = 0; i < n; ++i) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
                    var /= n;
                    cond = std::max(cond, mean * mean / (var + 1e-6));
                }
                std::vector<float> out(x.size(), kNaN);
                cpu::layer_norm(pool(), out.data(), x.data(), w.data(), wt, b.data(), wt, rows, n, 1e-6f, k);
                // (x - mean) cancels ~2 digits of x's f32 rounding when the mean is 3.5 and the spread 1: 1e-11. The
                // error grows with (mean / std)^2 (f32 rounding of the mean, relative to the spread); with n = 3 a row's
                // three values can lie close together, so the bound follows the worst row's condition beyond the typical
                // (3.5^2 / 0.75 for values uniform in [2, 5]).
                EXPECT_LT(nmse(out, want), 1e-11 * std::max(1.0, cond / (3.5 * 3.5 / 0.75)));
            }
}

// ---- C API ------------------------------------------------------------------------------------------------------

class NormOpsCApi : public CApiOpTest {};

TEST_F(NormOpsCApi, NullTensorsAreNamed) {
    qwen3vl_tensor* x = f32({2, 8});
    qwen3vl_tensor* w = f32({8});
    EXPECT_INVALID(qwen3vl_op_rms_norm(x, x, nullptr, 1e-6f), "qwen3vl_op_rms_norm: weight is NULL");
    EXPECT_INVALID(qwen3vl_op_add_rms_norm(nullptr, x, x, w, 1e-6f), "residual is NULL");
    EXPECT_INVALID(qwen3vl_op_layer_norm(x, x, w, nullptr, 1e-6f), "qwen3vl_op_layer_norm: bias is NULL");
}

TEST_F(NormOpsCApi, DtypesAndShapesAreChecked) {
    qwen3vl_tensor* x = f32({2, 8});
    qwen3vl_tensor* out = f32({2, 8});
    qwen3vl_tensor* x16 = make(QWEN3VL_DTYPE_F16, {2, 8});
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x16, f32({8}), 1e-6f), "qwen3vl_op_rms_norm: x must be f32, got f16");
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x, f32({7}), 1e-6f), "weight has shape [7], expected [8]");
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x, make(QWEN3VL_DTYPE_I32, {8}), 1e-6f), "weight must be f32 or f16 or bf16");
    EXPECT_INVALID(qwen3vl_op_rms_norm(out, x, f32({8}), -1.0f), "eps must be finite");
    EXPECT_INVALID(qwen3vl_op_layer_norm(out, x, f32({8}), f32({4}), 1e-6f), "bias has shape [4], expected [8]");
}

TEST_F(NormOpsCApi, AliasingRulesAreEnforced) {
    qwen3vl_tensor* buf = f32({17});
    qwen3vl_tensor* a = view(buf, 0, {2, 8});
    qwen3vl_tensor* shifted = view(buf, 1, {2, 8});
    qwen3vl_tensor* w = f32({8});
    EXPECT_INVALID(qwen3vl_op_rms_norm(shifted, a, w, 1e-6f), "out partly overlaps x");
    EXPECT_EQ(qwen3vl_op_rms_norm(a, a, w, 1e-6f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();  // in place
    qwen3vl_tensor* x = f32({2, 8});
    EXPECT_INVALID(qwen3vl_op_add_rms_norm(a, a, x, w, 1e-6f), "out overlaps residual");
}

TEST_F(NormOpsCApi, OpsRunEndToEnd) {
    // rms_norm of a constant row is the weight; add_rms_norm updates the residual.
    qwen3vl_tensor* x = f32({2, 4}, {1, 1, 1, 1, -2, -2, -2, -2});
    qwen3vl_tensor* w = make(QWEN3VL_DTYPE_BF16, {4});
    const std::vector<float> wv = {1, 2, 3, 4};
    ASSERT_EQ(qwen3vl_tensor_write(w, QWEN3VL_DTYPE_F32, wv.data(), 16), QWEN3VL_STATUS_OK);
    qwen3vl_tensor* out = f32({2, 4}, kNaN);
    ASSERT_EQ(qwen3vl_op_rms_norm(out, x, w, 0.0f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(out), (std::vector<float>{1, 2, 3, 4, -1, -2, -3, -4}));
    qwen3vl_tensor* res = f32({2, 4}, 1.0f);
    qwen3vl_tensor* out2 = f32({2, 4}, kNaN);
    ASSERT_EQ(qwen3vl_op_add_rms_norm(res, out2, x, w, 0.0f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(res), (std::vector<float>{2, 2, 2, 2, -1, -1, -1, -1}));
    EXPECT_EQ(read(out2), (std::vector<float>{1, 2, 3, 4, -1, -2, -3, -4}));
}

// ---- CUDA against the CPU ---------------------------------------------------------------------------------------

class CudaNormOps : public CudaOpsTest {};

TEST_F(CudaNormOps, Norms) {
    // Row lengths for both LayerNorm kernels: the register-row one (multiples of 4 up to 8192: one, two, four or eight
    // float4s per thread, part-filled ones included) and the general one (63, 1, 8196).
    const std::vector<std::vector<int64_t>> shapes = {{1, 1},     {3, 7, 63},  {5, 2048}, {130, 1152}, {3, 12},
                                                      {33, 1024}, {9, 4096},   {2, 8192}, {2, 8196}};
    for (const auto& shape : shapes) {
        const int64_t n = shape.back();
        for (qwen3vl_dtype wt : {kF32, kF16, kBF16}) {
            const std::string at = std::string(" weight ") + dtype_name(wt) + " rows of " + std::to_string(n);
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

}  // namespace
