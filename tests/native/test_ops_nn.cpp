// CPU norm / activation / rotary / attention / embedding / reduction kernels against plain double-precision
// references written here, on fresh random inputs (the seed is printed on failure), outputs poisoned with NaN
// before each run, every kernel set this CPU has (scalar always, AVX2 when present).
//
// Tolerances are NMSE = mse(got, ref) / mse(ref, 0). An f32 result rounded once has NMSE ~ 1e-15; a handful of
// f32 roundings per element (norms, activations, rotary) stays below 1e-13, so 1e-12 leaves margin without hiding
// a wrong formula (a wrong eps, a missing weight, a swapped rotary slot all give > 1e-6). Attention accumulates
// dot products and exponentials over hundreds of keys in f32 with a 2-ulp polynomial exp: 1e-10.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attention.h"
#include "cpu_features.h"
#include "dtype.h"
#include "elementwise.h"
#include "embedding.h"
#include "norm.h"
#include "reduce.h"
#include "reference_util.h"
#include "rope.h"
#include "thread_pool.h"

namespace {

using qwen3vl::testing::nmse;

using namespace qwen3vl;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Rng {
    unsigned seed = std::random_device{}();
    std::mt19937 gen{seed};
    float uniform(float lo = -1.0f, float hi = 1.0f) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
    int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
    std::vector<float> vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
        std::vector<float> v(n);
        for (float& x : v) x = uniform(lo, hi);
        return v;
    }
    std::string trace() const { return "seed " + std::to_string(seed); }
};

std::vector<CpuKernels> kernel_sets() {
    std::vector<CpuKernels> k{CpuKernels::Scalar};
    const uint32_t need = QWEN3VL_CPU_AVX2 | QWEN3VL_CPU_FMA | QWEN3VL_CPU_F16C;
    if ((detect_cpu_features() & need) == need) k.push_back(CpuKernels::Avx2);
    return k;
}

// A weight stored as dtype: the raw bytes and the values it really holds (after rounding), for the reference.
struct Weight {
    qwen3vl_dtype dtype;
    std::vector<uint16_t> h;
    std::vector<float> f;
    std::vector<double> value;
    const void* data() const { return dtype == QWEN3VL_DTYPE_F32 ? static_cast<const void*>(f.data()) : h.data(); }
};

Weight make_weight(Rng& rng, qwen3vl_dtype dtype, size_t n, float lo = -1.0f, float hi = 1.0f) {
    Weight w{dtype, {}, {}, {}};
    for (size_t i = 0; i < n; ++i) {
        const float x = rng.uniform(lo, hi);
        if (dtype == QWEN3VL_DTYPE_F16) {
            w.h.push_back(f32_to_f16(x));
            w.value.push_back(f16_to_f32(w.h.back()));
        } else if (dtype == QWEN3VL_DTYPE_BF16) {
            w.h.push_back(f32_to_bf16(x));
            w.value.push_back(bf16_to_f32(w.h.back()));
        } else {
            w.f.push_back(x);
            w.value.push_back(x);
        }
    }
    return w;
}

const qwen3vl_dtype kWeightDtypes[] = {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_BF16};

ThreadPool& pool() {
    static ThreadPool p(3);  // more threads than this machine's cores: the splitting is exercised everywhere
    return p;
}

// ---- elementwise -------------------------------------------------------------------------------------------

TEST(OpsNnElementwise, AddSwigluGeluMatchDoubleFormulas) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (int64_t n : {1, 17, 4097, 100003}) {
        const std::vector<float> a = rng.vec(n, -6, 6), b = rng.vec(n, -6, 6);
        std::vector<double> add(n), sw(n), gt(n), ge(n);
        for (int64_t i = 0; i < n; ++i) {
            const double x = a[i], y = b[i];
            add[i] = x + y;
            sw[i] = x / (1.0 + std::exp(-x)) * y;
            gt[i] = 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
            ge[i] = 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
        }
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

TEST(OpsNnElementwise, GeluTanhAndErfDiffer) {
    // The two forms differ by ~4e-4 at x = -3: a mix-up must be visible.
    EXPECT_GT(std::fabs(cpu::gelu_tanh_f32(-3.0f) - cpu::gelu_erf_f32(-3.0f)), 2e-4f);
}

// ---- norms -------------------------------------------------------------------------------------------------

std::vector<double> rms_ref(const std::vector<float>& x, const std::vector<double>& w, int64_t rows, int64_t n,
                            double eps) {
    std::vector<double> y(x.size());
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += double(x[r * n + i]) * x[r * n + i];
        const double s = 1.0 / std::sqrt(ss / n + eps);
        for (int64_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] * s * w[i];
    }
    return y;
}

TEST(OpsNnNorm, RmsNormMatchesReference) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (qwen3vl_dtype wt : kWeightDtypes)
            for (int64_t n : {1, 7, 16, 128, 2048, 2051})
                for (int64_t rows : {1, 3, 33}) {
                    SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " " + dtype_name(wt) + " n=" +
                                 std::to_string(n) + " rows=" + std::to_string(rows));
                    const std::vector<float> x = rng.vec(rows * n, -3, 3);
                    const Weight w = make_weight(rng, wt, n, 0.5f, 1.5f);
                    const auto want = rms_ref(x, w.value, rows, n, 1e-6);
                    std::vector<float> out(x.size(), kNaN);
                    cpu::rms_norm(pool(), out.data(), x.data(), w.data(), wt, rows, n, 1e-6f, k);
                    EXPECT_LT(nmse(out, want), 1e-12);
                    std::vector<float> inplace = x;
                    cpu::rms_norm(pool(), inplace.data(), inplace.data(), w.data(), wt, rows, n, 1e-6f, k);
                    EXPECT_LT(nmse(inplace, want), 1e-12);
                }
}

TEST(OpsNnNorm, EpsIsAddedInsideTheRoot) {
    // A row of tiny values: with eps 1e-6 the output is x / sqrt(x^2 + eps), far from sign(x).
    const std::vector<float> x(64, 1e-4f);
    const std::vector<float> w(64, 1.0f);
    for (CpuKernels k : kernel_sets()) {
        std::vector<float> out(64, kNaN);
        cpu::rms_norm(pool(), out.data(), x.data(), w.data(), QWEN3VL_DTYPE_F32, 1, 64, 1e-6f, k);
        EXPECT_NEAR(out[0], 1e-4 / std::sqrt(1e-8 + 1e-6), 1e-6);
    }
}

TEST(OpsNnNorm, AddRmsNormUpdatesResidualAndNormalises) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (qwen3vl_dtype wt : kWeightDtypes)
            for (int64_t n : {5, 16, 2048, 2053}) {
                SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " " + dtype_name(wt) + " n=" + std::to_string(n));
                const int64_t rows = 9;
                const std::vector<float> res0 = rng.vec(rows * n, -2, 2), x = rng.vec(rows * n, -2, 2);
                const Weight w = make_weight(rng, wt, n);
                std::vector<float> sum(res0.size());
                std::vector<double> sum_ref(res0.size());
                for (size_t i = 0; i < sum.size(); ++i) {
                    sum[i] = res0[i] + x[i];
                    sum_ref[i] = sum[i];
                }
                const auto want = rms_ref(sum, w.value, rows, n, 1e-6);
                std::vector<float> res = res0, out(res0.size(), kNaN);
                cpu::add_rms_norm(pool(), res.data(), out.data(), x.data(), w.data(), wt, rows, n, 1e-6f, k);
                EXPECT_EQ(nmse(res, sum_ref), 0.0);
                EXPECT_LT(nmse(out, want), 1e-12);
                std::vector<float> res2 = res0, x2 = x;  // out may be x
                cpu::add_rms_norm(pool(), res2.data(), x2.data(), x2.data(), w.data(), wt, rows, n, 1e-6f, k);
                EXPECT_LT(nmse(x2, want), 1e-12);
            }
}

TEST(OpsNnNorm, LayerNormMatchesReference) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (CpuKernels k : kernel_sets())
        for (qwen3vl_dtype wt : kWeightDtypes)
            for (int64_t n : {1, 3, 64, 1024, 1029}) {
                SCOPED_TRACE(std::string(cpu_kernels_name(k)) + " " + dtype_name(wt) + " n=" + std::to_string(n));
                const int64_t rows = 7;
                // Offset mean: the variance must be taken about the mean (a one-pass E[x^2] - E[x]^2 loses digits).
                const std::vector<float> x = rng.vec(rows * n, 2, 5);
                const Weight w = make_weight(rng, wt, n), b = make_weight(rng, wt, n);
                std::vector<double> want(x.size());
                double cond = 0;  // the worst row's (mean / std)^2: how much (x - mean) amplifies x's rounding
                for (int64_t r = 0; r < rows; ++r) {
                    double mean = 0, var = 0;
                    for (int64_t i = 0; i < n; ++i) mean += x[r * n + i];
                    mean /= n;
                    for (int64_t i = 0; i < n; ++i) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
                    var /= n;
                    cond = std::max(cond, mean * mean / (var + 1e-6));
                    for (int64_t i = 0; i < n; ++i)
                        want[r * n + i] = (x[r * n + i] - mean) / std::sqrt(var + 1e-6) * w.value[i] + b.value[i];
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

// ---- reductions --------------------------------------------------------------------------------------------

TEST(OpsNnReduce, SoftmaxMatchesReference) {
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

TEST(OpsNnReduce, ArgmaxTakesTheFirstOfTies) {
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

TEST(OpsNnReduce, TopKMatchesASortedReference) {
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

// ---- embeddings ----------------------------------------------------------------------------------------------

TEST(OpsNnEmbedding, GatherAndScatterAreExact) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (qwen3vl_dtype wt : kWeightDtypes) {
        const int64_t vocab = 50, width = 37, tokens = 13;
        const Weight table = make_weight(rng, wt, vocab * width);
        std::vector<int32_t> ids(tokens);
        for (auto& i : ids) i = rng.integer(0, vocab - 1);
        std::vector<float> out(tokens * width, kNaN);
        cpu::embedding(pool(), out.data(), table.data(), wt, ids.data(), tokens, width);
        for (int64_t t = 0; t < tokens; ++t)
            for (int64_t c = 0; c < width; ++c) ASSERT_EQ(out[t * width + c], table.value[ids[t] * width + c]);
    }
    const int64_t rows = 20, width = 9;
    const std::vector<float> x0 = rng.vec(rows * width), src = rng.vec(4 * width);
    const std::vector<int32_t> at = {17, 2, 3, 11};
    for (bool acc : {false, true}) {
        std::vector<float> x = x0;
        cpu::scatter_rows(pool(), x.data(), at.data(), src.data(), 4, width, acc);
        std::vector<float> want = x0;
        for (int r = 0; r < 4; ++r)
            for (int c = 0; c < width; ++c)
                want[at[r] * width + c] = acc ? want[at[r] * width + c] + src[r * width + c] : src[r * width + c];
        EXPECT_EQ(x, want);
    }
}

TEST(OpsNnEmbedding, LinspaceFollowsPyTorchsKernel) {
    // torch.linspace(0, 47, n) computes the second half downwards from the end: the last value is exactly 47 and
    // the middle is symmetric; values checked here are the ones torch prints for n = 20 and n = 3.
    EXPECT_EQ(cpu::linspace_f32(47.0f, 20, 19), 47.0f);
    EXPECT_EQ(cpu::linspace_f32(47.0f, 20, 0), 0.0f);
    EXPECT_EQ(cpu::linspace_f32(47.0f, 3, 1), 23.5f);
    EXPECT_EQ(cpu::linspace_f32(47.0f, 1, 0), 0.0f);
    for (int64_t n : {14, 20, 48, 97})
        for (int64_t i = 0; i < n; ++i)
            EXPECT_NEAR(cpu::linspace_f32(47.0f, n, i), 47.0 * i / (n - 1), 1e-5) << n << " " << i;
}

// transformers' fast_pos_embed_interpolate for one image (t = 1), step by step in f32 as torch runs it.
std::vector<float> fast_pos_embed_interpolate(const std::vector<float>& table, int64_t side, int64_t width, int64_t h,
                                              int64_t w, int64_t merge) {
    auto linspace = [&](int64_t n) {
        std::vector<float> v(n);
        if (n == 1) return std::vector<float>{0.0f};
        const float end = float(side - 1), step = end / float(n - 1);
        for (int64_t i = 0; i < n; ++i) v[i] = i < n / 2 ? 0.0f + step * float(i) : end - step * float(n - i - 1);
        return v;
    };
    const std::vector<float> hs = linspace(h), ws = linspace(w);
    std::vector<float> grid(h * w * width);  // row-major (y, x), before the merge permutation
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            const int32_t hf = int32_t(hs[y]), wf = int32_t(ws[x]);
            const int64_t hc = std::min<int64_t>(hf + 1, side - 1), wc = std::min<int64_t>(wf + 1, side - 1);
            const float dh = hs[y] - float(hf), dw = ws[x] - float(wf);
            const int64_t idx[4] = {hf * side + wf, hf * side + wc, hc * side + wf, hc * side + wc};
            const float wt[4] = {(1 - dh) * (1 - dw), (1 - dh) * dw, dh * (1 - dw), dh * dw};
            for (int64_t c = 0; c < width; ++c) {
                float p[4];
                for (int i = 0; i < 4; ++i) p[i] = table[idx[i] * width + c] * wt[i];
                grid[(y * w + x) * width + c] = p[0] + p[1] + p[2] + p[3];
            }
        }
    // view(h/m, m, w/m, m, C).permute(0, 2, 1, 3, 4)
    std::vector<float> out;
    for (int64_t bh = 0; bh < h / merge; ++bh)
        for (int64_t bw = 0; bw < w / merge; ++bw)
            for (int64_t ih = 0; ih < merge; ++ih)
                for (int64_t iw = 0; iw < merge; ++iw) {
                    const int64_t y = bh * merge + ih, x = bw * merge + iw;
                    out.insert(out.end(), grid.begin() + (y * w + x) * width, grid.begin() + (y * w + x + 1) * width);
                }
    return out;
}

TEST(OpsNnEmbedding, PositionEmbeddingIsTransformersInterpolation) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    const int64_t side = 48, width = 8;
    const std::vector<float> table = rng.vec(side * side * width);
    struct Case {
        int64_t h, w, merge;
    };
    for (const Case& c : {Case{14, 20, 2}, Case{20, 14, 2}, Case{48, 48, 2}, Case{3, 5, 1}, Case{2, 2, 2}}) {
        SCOPED_TRACE(std::to_string(c.h) + "x" + std::to_string(c.w) + " merge " + std::to_string(c.merge));
        std::vector<float> out(c.h * c.w * width, kNaN);
        cpu::position_embedding(pool(), out.data(), table.data(), QWEN3VL_DTYPE_F32, side, width, c.h, c.w, c.merge);
        // Bit-exact with the f32 steps of transformers.
        EXPECT_EQ(out, fast_pos_embed_interpolate(table, side, width, c.h, c.w, c.merge));
        // And close to align-corners bilinear interpolation in double (coordinates differ by the f32 linspace).
        std::vector<double> want;
        for (int64_t bh = 0; bh < c.h / c.merge; ++bh)
            for (int64_t bw = 0; bw < c.w / c.merge; ++bw)
                for (int64_t ih = 0; ih < c.merge; ++ih)
                    for (int64_t iw = 0; iw < c.merge; ++iw) {
                        const int64_t y = bh * c.merge + ih, x = bw * c.merge + iw;
                        const double fy = c.h > 1 ? 47.0 * y / (c.h - 1) : 0, fx = c.w > 1 ? 47.0 * x / (c.w - 1) : 0;
                        const int64_t y0 = std::min<int64_t>(int64_t(fy), 46), x0 = std::min<int64_t>(int64_t(fx), 46);
                        const double ty = fy - y0, tx = fx - x0;
                        for (int64_t ch = 0; ch < width; ++ch) {
                            auto at = [&](int64_t yy, int64_t xx) { return double(table[(yy * side + xx) * width + ch]); };
                            want.push_back((1 - ty) * (1 - tx) * at(y0, x0) + (1 - ty) * tx * at(y0, x0 + 1) +
                                           ty * (1 - tx) * at(y0 + 1, x0) + ty * tx * at(y0 + 1, x0 + 1));
                        }
                    }
        // f32 sample points are off by up to ~47 * 2^-24: with neighbouring entries differing by ~1, 1e-9.
        EXPECT_LT(nmse(out, want), 1e-9);
    }
    // 48 x 48 samples the table's own points: the output is the table in merge-window order, exactly.
    std::vector<float> out(side * side * width, kNaN);
    cpu::position_embedding(pool(), out.data(), table.data(), QWEN3VL_DTYPE_F32, side, width, side, side, 2);
    EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + width), std::vector<float>(table.begin(), table.begin() + width));
    EXPECT_EQ(std::vector<float>(out.begin() + 2 * width, out.begin() + 3 * width),
              std::vector<float>(table.begin() + side * width, table.begin() + (side + 1) * width));
}

// ---- rotary ------------------------------------------------------------------------------------------------

// The f32 steps the contract fixes (transformers' inv_freq and angle roundings); everything after them in double.
std::vector<float> inv_freq_f32(int64_t dim, float theta) {
    std::vector<float> f;
    for (int64_t i = 0; 2 * i < dim; ++i)
        f.push_back(1.0f / float(std::pow(double(theta), double(float(2 * i) / float(dim)))));
    return f;
}

TEST(OpsNnRope, InvFreqIsTheF32FormulaAndCloseToExact) {
    for (int64_t dim : {16, 32, 64, 128})
        for (float theta : {10000.0f, 5000000.0f}) {
            std::vector<float> got(dim / 2);
            cpu::rope_inv_freq(got.data(), dim, theta);
            EXPECT_EQ(got, inv_freq_f32(dim, theta));
            for (int64_t i = 0; i < dim / 2; ++i)
                EXPECT_NEAR(got[i] / std::pow(double(theta), -2.0 * i / dim), 1.0, 3e-7);
        }
}

void rotate_ref(std::vector<double>& x, size_t off, const std::vector<double>& ang, int64_t half) {
    for (int64_t i = 0; i < half; ++i) {
        const double a = x[off + i], b = x[off + i + half];
        x[off + i] = a * std::cos(ang[i]) - b * std::sin(ang[i]);
        x[off + i + half] = b * std::cos(ang[i]) + a * std::sin(ang[i]);
    }
}

TEST(OpsNnRope, QkNormMropeAndKvWriteMatchReference) {
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
                    const Weight qn = make_weight(rng, QWEN3VL_DTYPE_BF16, D, 0.5f, 1.5f);
                    const Weight kn = make_weight(rng, QWEN3VL_DTYPE_F32, D, 0.5f, 1.5f);
                    std::vector<int32_t> pos(3 * T);
                    for (auto& p : pos) p = rng.integer(0, 5000);  // t, h and w streams all different
                    const float theta = 5000000.0f;

                    // Reference: slots start on the t stream; slots 1,4,7,... below 3*section[1] take h,
                    // slots 2,5,8,... below 3*section[2] take w (the reference doc's interleave rule).
                    const std::vector<float> inv = inv_freq_f32(D, theta);
                    auto angles = [&](int64_t t) {
                        std::vector<int32_t> stream(half, pos[t]);
                        for (int64_t i = 1; i < 3 * section[1] && i < half; i += 3) stream[i] = pos[T + t];
                        for (int64_t i = 2; i < 3 * section[2] && i < half; i += 3) stream[i] = pos[2 * T + t];
                        std::vector<double> a(half);
                        for (int64_t i = 0; i < half; ++i) a[i] = double(float(stream[i]) * inv[i]);
                        return a;
                    };
                    auto norm_rot = [&](const std::vector<float>& x, int64_t H, const Weight& w) {
                        std::vector<double> y(x.size());
                        for (int64_t t = 0; t < T; ++t) {
                            const auto a = angles(t);
                            for (int64_t h = 0; h < H; ++h) {
                                const size_t off = size_t((t * H + h) * D);
                                double ss = 0;
                                for (int64_t d = 0; d < D; ++d) ss += double(x[off + d]) * x[off + d];
                                const double s = 1.0 / std::sqrt(ss / D + 1e-6);
                                for (int64_t d = 0; d < D; ++d) y[off + d] = x[off + d] * s * w.value[d];
                                rotate_ref(y, off, a, half);
                            }
                        }
                        return y;
                    };
                    const auto q_want = norm_rot(q, Hq, qn), k_want = norm_rot(kk, Hkv, kn);

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

TEST(OpsNnRope, EqualStreamsGiveOrdinaryRope) {
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

TEST(OpsNnRope, VisionRopeRotatesRowsThenColumns) {
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

// ---- attention ---------------------------------------------------------------------------------------------

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
    std::vector<uint16_t> h;
    std::vector<double> value;  // what the cache holds, as double (NaN in the rows never written)
    const void* data() const { return dtype == QWEN3VL_DTYPE_F32 ? static_cast<const void*>(f.data()) : h.data(); }
};

// A cache of cap rows whose first `filled` rows are random and the rest NaN: reading past the visible keys shows.
Cache make_cache(Rng& rng, qwen3vl_dtype dtype, int64_t cap, int64_t filled, int64_t row) {
    Cache c{dtype, {}, {}, {}};
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

TEST(OpsNnAttention, CausalEqualsFullSoftmaxOverTheVisibleKeys) {
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
            a.kv_stride = row;
            a.tokens = c.T;
            a.q_heads = Hq;
            a.kv_heads = c.Hkv;
            a.head_dim = c.D;
            a.causal = true;
            a.n_past = c.n_past;
            cpu::attention(pool(), a, k);
            EXPECT_LT(nmse(out, want), 1e-10);
        }
}

TEST(OpsNnAttention, PrefillEqualsTokenByTokenDecode) {
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

TEST(OpsNnAttention, SegmentsAttendWithinTheirOwnSegment) {
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

}  // namespace
