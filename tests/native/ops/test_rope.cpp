// The rotary ops (native/core/ops.h, QWEN3VL_ROPE_OPS): qk_norm_rope_kv (the text attention prologue: per-head
// RMSNorm of q and k, interleaved M-RoPE, k and v into the caches) and rope_vision (2-D rotary of a fused vision qkv).
// The suites and helpers are described in op_test_util.h; the double references of the rotary steps (inv_freq_f32,
// rotate_ref, qk_norm_mrope_ref) are in reference_util.h, shared with the fused qk_norm_rope_attention (attention).
//
// Tolerances. CPU kernels against double references: NMSE = mse(got, ref) / mse(ref, 0) <= 1e-12 (a handful of f32
// roundings per element stays below 1e-13; a swapped rotary slot gives > 1e-6); the cache rows exactly as the cache
// dtype rounds k and v. CUDA against the CPU: 1e-10 (the cos / sin go through double on both sides); 16-bit KV cache
// writes 1e-8 (a last-bit difference in f32 can flip a bf16 rounding: ~2^-8 on a few elements); v copied: exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "norm.h"
#include "op_test_util.h"
#include "reference_util.h"
#include "rope.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::testing;

// ---- CPU kernels ------------------------------------------------------------------------------------------------

TEST(RopeOps, InvFreqIsTheF32FormulaAndCloseToExact) {
    for (int64_t dim : {16, 32, 64, 128})
        for (float theta : {10000.0f, 5000000.0f}) {
            std::vector<float> got(dim / 2, kNaN);
            cpu::rope_inv_freq(got.data(), dim, theta);
            EXPECT_EQ(got, inv_freq_f32(dim, theta));
            for (int64_t i = 0; i < dim / 2; ++i)
                EXPECT_NEAR(got[i] / std::pow(double(theta), -2.0 * i / dim), 1.0, 3e-7);
        }
}

TEST(RopeOps, QkNormMropeAndKvWriteMatchReference) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (qwen3vl_dtype cache_t : kWeightDtypes)
            for (int64_t D : {16, 64, 128})
                for (int64_t T : {1, 3, 17}) {
                    const int64_t Hq = 4, Hkv = 2, n_past = T == 1 ? 9 : 0, cap = n_past + T + 2;
                    SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " cache " + dtype_name(cache_t) + " D=" +
                                 std::to_string(D) + " T=" + std::to_string(T));
                    const int64_t half = D / 2;
                    // mrope_section scaled to half: [24, 20, 20] for D = 128.
                    const int64_t section[3] = {half - 2 * (half * 20 / 64), half * 20 / 64, half * 20 / 64};
                    std::vector<float> q = rng.vec(T * Hq * D, -2, 2), kk = rng.vec(T * Hkv * D, -2, 2),
                                       v = rng.vec(T * Hkv * D);
                    const Stored qn = make_stored(rng, QWEN3VL_DTYPE_BF16, D, 0, 0.5f, 1.5f);
                    const Stored kn = make_stored(rng, QWEN3VL_DTYPE_F32, D, 0, 0.5f, 1.5f);
                    std::vector<int32_t> pos(3 * T);
                    for (auto& p : pos) p = rng.integer(0, 5000);  // t, h and w streams all different
                    const float theta = 5000000.0f;

                    // Reference: qk_norm_mrope_ref (reference_util.h), the interleave rule of native/cpu/rope.h.
                    const auto q_want = qk_norm_mrope_ref(q, T, Hq, D, qn.values, 1e-6f, pos, theta, section),
                               k_want = qk_norm_mrope_ref(kk, T, Hkv, D, kn.values, 1e-6f, pos, theta, section);

                    const size_t cache_n = size_t(cap * Hkv * D);
                    std::vector<float> kc32(cache_n, kNaN), vc32(cache_n, kNaN);
                    std::vector<uint16_t> kc16(cache_n, 0xffff), vc16(cache_n, 0xffff);  // NaN in f16 and bf16
                    void* kc = cache_t == QWEN3VL_DTYPE_F32 ? static_cast<void*>(kc32.data()) : kc16.data();
                    void* vc = cache_t == QWEN3VL_DTYPE_F32 ? static_cast<void*>(vc32.data()) : vc16.data();
                    cpu::QkNormRopeKv a{q.data(), kk.data(), v.data(), T, Hq, Hkv, D, qn.data(), qn.dtype,
                                        kn.data(), kn.dtype, 1e-6f, pos.data(), theta, {section[0], section[1], section[2]}, kc, vc, cache_t,
                                        n_past};
                    cpu::qk_norm_rope_kv(pool(), a, k);
                    EXPECT_LT(nmse(q, q_want), 1e-12);
                    EXPECT_LT(nmse(kk, k_want), 1e-12);
                    // The cache rows n_past .. n_past+T-1 hold k and v in the cache dtype; the rest is untouched.
                    auto cache_at = [&](void* c, size_t i) {
                        if (cache_t == QWEN3VL_DTYPE_F32) return static_cast<float*>(c)[i];
                        const uint16_t h = static_cast<uint16_t*>(c)[i];
                        return cache_t == QWEN3VL_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
                    };
                    auto round = [&](float x) {
                        return cache_t == QWEN3VL_DTYPE_F32   ? x
                               : cache_t == QWEN3VL_DTYPE_F16 ? f16_to_f32(f32_to_f16(x))
                                                              : bf16_to_f32(f32_to_bf16(x));
                    };
                    for (int64_t j = 0; j < cap; ++j)
                        for (int64_t i = 0; i < Hkv * D; ++i) {
                            const size_t c = size_t(j * Hkv * D + i);
                            if (j < n_past || j >= n_past + T) {
                                ASSERT_TRUE(std::isnan(cache_at(kc, c)) && std::isnan(cache_at(vc, c))) << j;
                            } else {
                                const size_t s = size_t((j - n_past) * Hkv * D + i);
                                ASSERT_EQ(cache_at(kc, c), round(kk[s])) << j << " " << i;
                                ASSERT_EQ(cache_at(vc, c), round(v[s])) << j << " " << i;
                            }
                        }
                }
}

TEST(RopeOps, EqualStreamsGiveOrdinaryRope) {
    // With t = h = w the interleave is invisible: plain 1D RoPE of the norm output.
    const int64_t D = 128, half = 64, T = 2, H = 1;
    const int64_t section[3] = {24, 20, 20};
    std::vector<float> q(T * H * D), k(T * H * D), v(T * H * D, 0.0f), kc(4 * D), vc(4 * D);
    for (int64_t i = 0; i < T * D; ++i) q[i] = k[i] = float((i * 37) % 11) - 5.0f;
    const std::vector<float> w(D, 1.0f);
    const std::vector<int32_t> pos = {3, 1000, 3, 1000, 3, 1000};
    std::vector<float> q_plain = q;
    cpu::QkNormRopeKv a{q.data(), k.data(), v.data(), T, H, H, D, w.data(), QWEN3VL_DTYPE_F32, w.data(),
                        QWEN3VL_DTYPE_F32, 1e-6f, pos.data(), 1e6f, {section[0], section[1], section[2]}, kc.data(), vc.data(), QWEN3VL_DTYPE_F32, 0};
    cpu::qk_norm_rope_kv(pool(), a, CpuKernels::Scalar);
    const std::vector<float> inv = inv_freq_f32(D, 1e6f);
    for (int64_t t = 0; t < T; ++t) {
        float* row = q_plain.data() + t * D;
        cpu::rms_norm_row_scalar(row, row, w.data(), QWEN3VL_DTYPE_F32, D, 1e-6f);
        std::vector<float> c(half), s(half);
        for (int64_t i = 0; i < half; ++i) {
            const float ang = float(pos[t]) * inv[i];
            c[i] = float(std::cos(double(ang)));
            s[i] = float(std::sin(double(ang)));
        }
        cpu::rotate_half_apply(row, c.data(), s.data(), half);
    }
    EXPECT_EQ(q, q_plain);
    EXPECT_EQ(k, q_plain);
}

TEST(RopeOps, VisionRopeRotatesRowsThenColumns) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (int64_t D : {16, 64, 80}) {
        const int64_t T = 13, H = 3, half = D / 2, quarter = D / 4;
        std::vector<float> qkv = rng.vec(T * 3 * H * D);
        std::vector<int32_t> pos(2 * T);
        for (auto& p : pos) p = rng.integer(0, 120);
        std::vector<double> want(qkv.begin(), qkv.end());
        const std::vector<float> inv = inv_freq_f32(half, 10000.0f);
        for (int64_t t = 0; t < T; ++t) {
            std::vector<double> ang(half);
            for (int64_t j = 0; j < quarter; ++j) {
                ang[j] = double(float(pos[2 * t]) * inv[j]);
                ang[quarter + j] = double(float(pos[2 * t + 1]) * inv[j]);
            }
            for (int64_t part = 0; part < 2; ++part)
                for (int64_t h = 0; h < H; ++h) rotate_ref(want, size_t(((t * 3 + part) * H + h) * D), ang, half);
        }
        cpu::rope_vision(pool(), qkv.data(), T, H, D, pos.data(), 10000.0f);
        EXPECT_LT(nmse(qkv, want), 1e-12) << D;
        for (int64_t t = 0; t < T; ++t)  // v is untouched
            for (int64_t i = 0; i < H * D; ++i) ASSERT_EQ(double(qkv[(t * 3 + 2) * H * D + i]), want[(t * 3 + 2) * H * D + i]);
    }
}

// ---- C API ------------------------------------------------------------------------------------------------------

class RopeOpsCApi : public CApiOpTest {};

TEST_F(RopeOpsCApi, NullTensorsAreNamed) {
    qwen3vl_tensor* x = f32({2, 8});
    qwen3vl_tensor* w = f32({8});
    EXPECT_INVALID(qwen3vl_op_rope_vision(nullptr, x, 1e4f), "qwen3vl_op_rope_vision: qkv is NULL");
    const int64_t sec[3] = {2, 1, 1};
    EXPECT_INVALID(op::qk_norm_rope_kv(x, x, x, w, w, 1e-6f, nullptr, 1e6f, sec, x, x, 0, nullptr),
                   "qwen3vl_op_qk_norm_rope_kv: positions is NULL");
}

TEST_F(RopeOpsCApi, RotaryArgumentsAreChecked) {
    const int64_t T = 2, H = 2, D = 8;
    qwen3vl_tensor *q = f32({T, H, D}), *k = f32({T, 1, D}), *v = f32({T, 1, D}), *w = f32({D});
    qwen3vl_tensor* pos = i32({3, T}, {0, 1, 0, 1, 0, 1});
    qwen3vl_tensor *kc = f32({4, 1, D}), *vc = f32({4, 1, D});
    const int64_t sec[3] = {2, 1, 1};
    EXPECT_EQ(op::qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 2, nullptr), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_INVALID(op::qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 3, nullptr),
                   "n_past 3 + 2 tokens does not fit the cache's 4 rows");
    const int64_t negative[3] = {2, -1, 1};
    EXPECT_INVALID(op::qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, negative, kc, vc, 0, nullptr),
                   "mrope_section[1] is negative");
    // The cache-writing half takes the fused op's parameters with out NULL.
    qwen3vl_qk_norm_rope_attention_params p =
        op::rope_attention_params(nullptr, q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, vc, 0, nullptr, 0);
    p.out = f32({T, H, D});
    EXPECT_INVALID(qwen3vl_op_qk_norm_rope_kv(&p), "qwen3vl_op_qk_norm_rope_kv: out must be NULL");
    EXPECT_INVALID(op::qk_norm_rope_kv(q, k, v, w, w, 1e-6f, i32({3, 1}, {0, 0, 0}), 1e6f, sec, kc, vc, 0, nullptr),
                   "positions has shape [3, 1], expected [3, 2]");
    EXPECT_INVALID(op::qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, make(QWEN3VL_DTYPE_BF16, {4, 1, D}), 0, nullptr),
                   "v_cache must be f32, got bf16");
    EXPECT_INVALID(op::qk_norm_rope_kv(q, k, v, w, w, 1e-6f, pos, 1e6f, sec, kc, kc, 0, nullptr), "k_cache overlaps v_cache");
    EXPECT_INVALID(qwen3vl_op_rope_vision(f32({T, 3, H, 6}), i32({T, 2}, {0, 0, 0, 1}), 1e4f), "must be a multiple of 4");
    EXPECT_INVALID(qwen3vl_op_rope_vision(f32({T, 2, H, 8}), i32({T, 2}, {0, 0, 0, 1}), 1e4f),
                   "qkv has shape [2, 2, 2, 8], expected [*, 3, *, *]");
}

TEST_F(RopeOpsCApi, OpsRunEndToEnd) {
    // Token 0 at (0, 0) turns by angle 0: its q and k stay as they are; v is never rotated; token 1's k turns.
    const std::vector<float> in = {0, 0, 0, 0, 1, 1, 1, 1, 5, 6, 7, 8, 0, 0, 0, 0, 1, 1, 1, 1, -1, -2, -3, -4};
    qwen3vl_tensor* qkv = f32({2, 3, 1, 4}, in);
    ASSERT_EQ(qwen3vl_op_rope_vision(qkv, i32({2, 2}, {0, 0, 1, 1}), 1e4f), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    const std::vector<float> got = read(qkv);
    EXPECT_EQ(std::vector<float>(got.begin(), got.begin() + 12), std::vector<float>(in.begin(), in.begin() + 12));
    EXPECT_EQ(std::vector<float>(got.begin() + 20, got.end()), std::vector<float>(in.begin() + 20, in.end()));
    EXPECT_NE(std::vector<float>(got.begin() + 16, got.begin() + 20), std::vector<float>(in.begin() + 16, in.begin() + 20));
}

// ---- CUDA against the CPU ---------------------------------------------------------------------------------------

class CudaRopeOps : public CudaOpsTest {};

TEST_F(CudaRopeOps, QkNormRopeKv) {
    struct Case {
        int64_t T, n_past, Hq, Hkv, D;
        qwen3vl_dtype cache;
    };
    const Case cases[] = {{1, 0, 16, 8, 128, kBF16}, {5, 17, 8, 2, 128, kF32}, {33, 0, 8, 2, 64, kF16},
                          {1, 300, 4, 4, 64, kF32}, {3, 4, 6, 3, 128, kBF16}};
    for (const Case& k : cases) {
        const std::string at = " T=" + std::to_string(k.T) + " n_past=" + std::to_string(k.n_past) +
                               " D=" + std::to_string(k.D) + " cache " + dtype_name(k.cache);
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
            return op::qk_norm_rope_kv(on(q, c), on(kk, c), on(v, c), on(qn, c), on(kn, c), 1e-6f, on(tp, c),
                                              5000000.0f, section, on(kc, c), on(vc, c), k.n_past, nullptr);
        });
        expect_close(q, 1e-10, "q" + at);
        expect_close(kk, 1e-10, "k" + at);
        const double cache_threshold = k.cache == kF32 ? 1e-10 : 1e-8;
        expect_close(kc, cache_threshold, "k_cache" + at);
        expect_close(vc, 0.0, "v_cache" + at);  // a copy, rounded the same way on both
    }
}

TEST_F(CudaRopeOps, RopeVision) {
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

}  // namespace
