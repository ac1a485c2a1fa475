// linear / linear_swiglu: both code paths (scalar, AVX2 GEMV and GEMM) against a double-precision reference on fresh
// random inputs in [-1, 1], every weight dtype, unaligned weights, odd shapes, outputs poisoned with NaN; then the C
// API's argument checks and a 3-D x through the exported functions; then the fused ops (norm_linear,
// norm_linear_swiglu, linear_residual and the vision blocks' linear_gelu, layer_norm_linear, mlp_gelu) through the C
// API against double references of the whole chain (norm, projection, activation, residual) written here. (On the
// CPU the fused ops are built from the unfused kernels, so comparing them with the op sequence proves nothing.)
//
// Tolerance. The weights are widened exactly (bf16/f16 -> f32), so the only error is f32 rounding in the sums.
// Whatever the summation order (sequential, 8-lane, K-blocked), an f32 sum of K products plus a bias satisfies
// |got - ref| <= gamma(K + 2) * (sum_k |x_k w_k| + |bias|), gamma(n) = n u / (1 - n u), u = 2^-24 (Higham, Accuracy
// and Stability of Numerical Algorithms, 3.1) — checked per element. The typical error is a random walk,
// NMSE ~ K u^2 / 2 ~ 4e-12 at K = 2049, so NMSE <= 1e-9 is also required: a lost block or a wrong rounding fails it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu_features.h"
#include "dtype.h"
#include "gemm.h"
#include "capi_handles.h"
#include "qwen3vl.h"
#include "reference_util.h"
#include "thread_pool.h"

namespace {

using qwen3vl::testing::gamma_n;
using qwen3vl::testing::kU;
using qwen3vl::testing::nmse;

using namespace qwen3vl;


uint32_t fresh_seed() {
    if (const char* s = std::getenv("QWEN3VL_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
    return std::random_device{}();
}

std::vector<CpuKernels> kernel_sets() {
    std::vector<CpuKernels> k{CpuKernels::Scalar};
    const uint32_t avx2 = QWEN3VL_CPU_AVX2 | QWEN3VL_CPU_FMA | QWEN3VL_CPU_F16C;
    if ((detect_cpu_features() & avx2) == avx2) k.push_back(CpuKernels::Avx2);
    return k;
}

// A matrix in a weight dtype at a chosen byte misalignment, and its exact f32 values.
struct Stored {
    std::vector<uint8_t> bytes;
    size_t offset = 0;
    qwen3vl_dtype dtype = QWEN3VL_DTYPE_F32;
    std::vector<float> values;
    Weight view() const { return {bytes.data() + offset, dtype}; }
};

Stored make_stored(std::mt19937& rng, qwen3vl_dtype dtype, size_t count, size_t misalign) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    Stored s;
    s.dtype = dtype;
    s.offset = misalign;
    s.bytes.assign(count * dtype_size(dtype) + misalign, 0);
    s.values.resize(count);
    for (size_t i = 0; i < count; ++i) {
        const float f = dist(rng);
        uint8_t* p = s.bytes.data() + misalign + i * dtype_size(dtype);
        if (dtype == QWEN3VL_DTYPE_F32) {
            std::memcpy(p, &f, 4);
            s.values[i] = f;
        } else {
            const uint16_t h = dtype == QWEN3VL_DTYPE_BF16 ? f32_to_bf16(f) : f32_to_f16(f);
            std::memcpy(p, &h, 2);
            s.values[i] = dtype == QWEN3VL_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
    }
    return s;
}

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& f : v) f = dist(rng);
    return v;
}

// ref[m, n] = sum_k x w (+ bias) in double, and the matching sum of magnitudes for the error bound. x: float inputs,
// or the double output of a reference norm / activation.
template <class X>
void reference(const std::vector<X>& x, const std::vector<float>& w, const std::vector<float>* bias, int64_t M,
               int64_t K, int64_t N, std::vector<double>& ref, std::vector<double>& mag) {
    ref.assign(size_t(M * N), 0.0);
    mag.assign(size_t(M * N), 0.0);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double s = bias ? (*bias)[size_t(n)] : 0.0, a = bias ? std::fabs((*bias)[size_t(n)]) : 0.0;
            for (int64_t k = 0; k < K; ++k) {
                const double p = double(x[size_t(m * K + k)]) * w[size_t(n * K + k)];
                s += p;
                a += std::fabs(p);
            }
            ref[size_t(m * N + n)] = s;
            mag[size_t(m * N + n)] = a;
        }
}

// ---- Double references of the fused chains. Each value comes with a bound on how far an f32 kernel may be from it,
// built op by op from the input's bound (gamma as above; the weights, norm weights and biases are the tensors' own
// values read back, so bf16 / f16 rounding is in the reference and every bound is an f32 one):
//  - linear over y known to within err_k: gamma(K + 2) (sum_k |y_k w_nk| + |bias_n|) for the f32 sum (as in the test
//    above) plus sum_k err_k |w_nk| for the input's own error (reference() over err and |w|);
//  - rms_norm: the inverse RMS comes from a sum of K squares (gamma(K), any order), halved by the square root; the
//    division by K, eps add, square root and 1 / add 4u, the two products 2u: every y_k is within gamma(K + 6) |y_k|;
//  - layer_norm: the mean is off by at most em = gamma(K + 1) mean|x|, so x_k - mean by em + u |x_k - mean|; the
//    variance about the rounded mean is within gamma(K + 4) (its shift adds only em^2: sum (x - mean) = 0), rstd
//    within half that + 2u + em^2 / var, two products and the bias add 3u: |err_k| <= rstd |w_k| (em + (gamma(K +
//    12) + em^2 / var) |x_k - mean|) + 2u |y_k|;
//  - gelu: |gelu'| <= 1.129 (at x = sqrt 2, either form), and the f32 formula itself (constants rounded to f32,
//    erf / tanh within 2 ulp, 1 + erf or 1 + tanh, the products) is within ~5u |z|: 1.13 err + 10u |z|;
//  - swiglu silu(g) u: |silu'| <= 1.0998, and the f32 exp, division and product add a few ulp of the result;
//  - residual add: err + u |sum|.
// The typical error is a random walk (NMSE ~ K u^2, ~2e-12 at K = 1000 and the same for the norm's scale), so
// matches() also requires NMSE <= 1e-9, as the linear test above.
struct Ref {
    std::vector<double> v, err;
};

Ref exact(const std::vector<float>& x) {
    return {std::vector<double>(x.begin(), x.end()), std::vector<double>(x.size(), 0.0)};
}

// Rows of the test inputs are scaled by these in turn: with mean(x^2) ~ 3e-7 in a 1e-3 row, eps (1e-6, 1e-5) changes
// the norm's scale by a factor 2 to 6 (and 1e-6 by ~1.5% in a 1e-2 row), so a wrong or missing eps fails.
const float kRowScale[4] = {1e-3f, 1.0f, 1e-2f, 1e-1f};

std::vector<float> scaled_rows(std::mt19937& rng, int64_t M, int64_t K) {
    std::vector<float> x = random_floats(rng, size_t(M * K));
    for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k) x[size_t(m * K + k)] *= kRowScale[m % 4];
    return x;
}

Ref rms_norm_ref(const std::vector<float>& x, const std::vector<float>& w, int64_t M, int64_t K, float eps) {
    Ref r{std::vector<double>(x.size()), std::vector<double>(x.size())};
    for (int64_t m = 0; m < M; ++m) {
        double ss = 0.0;
        for (int64_t k = 0; k < K; ++k) ss += double(x[size_t(m * K + k)]) * x[size_t(m * K + k)];
        const double s = 1.0 / std::sqrt(ss / double(K) + double(eps));
        for (int64_t k = 0; k < K; ++k) {
            const size_t i = size_t(m * K + k);
            r.v[i] = x[i] * s * w[size_t(k)];
            r.err[i] = gamma_n(double(K + 6)) * std::fabs(r.v[i]);
        }
    }
    return r;
}

Ref layer_norm_ref(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b, int64_t M,
                   int64_t K, float eps) {
    Ref r{std::vector<double>(x.size()), std::vector<double>(x.size())};
    for (int64_t m = 0; m < M; ++m) {
        const float* xr = x.data() + m * K;
        double mean = 0.0, mean_abs = 0.0, var = 0.0;
        for (int64_t k = 0; k < K; ++k) {
            mean += xr[k];
            mean_abs += std::fabs(xr[k]);
        }
        mean /= double(K);
        mean_abs /= double(K);
        for (int64_t k = 0; k < K; ++k) var += (xr[k] - mean) * (xr[k] - mean);
        var /= double(K);
        const double rstd = 1.0 / std::sqrt(var + double(eps)), em = gamma_n(double(K + 1)) * mean_abs;
        const double rel = gamma_n(double(K + 12)) + em * em / (var + double(eps));
        for (int64_t k = 0; k < K; ++k) {
            const size_t i = size_t(m * K + k);
            r.v[i] = (xr[k] - mean) * rstd * w[size_t(k)] + b[size_t(k)];
            r.err[i] = rstd * std::fabs(w[size_t(k)]) * (em + rel * std::fabs(xr[k] - mean)) + 2 * kU * std::fabs(r.v[i]);
        }
    }
    return r;
}

Ref linear_ref(const Ref& y, const std::vector<float>& w, const std::vector<float>* bias, int64_t M, int64_t K,
               int64_t N) {
    Ref r;
    std::vector<double> mag, prop, unused;
    reference(y.v, w, bias, M, K, N, r.v, mag);
    std::vector<float> abs_w(w.size());
    for (size_t i = 0; i < w.size(); ++i) abs_w[i] = std::fabs(w[i]);
    reference(y.err, abs_w, nullptr, M, K, N, prop, unused);
    // The kernel sums the f32 y' (|y'_k| <= |y_k| + err_k): gamma over mag + prop, plus prop for y' - y itself.
    const double g = gamma_n(double(K + 2));
    r.err.resize(r.v.size());
    for (size_t i = 0; i < r.v.size(); ++i) r.err[i] = g * (mag[i] + prop[i]) + prop[i];
    return r;
}

Ref gelu_ref(const Ref& z, bool tanh_form) {
    const double kPi = 3.14159265358979323846;
    Ref r{std::vector<double>(z.v.size()), std::vector<double>(z.v.size())};
    for (size_t i = 0; i < z.v.size(); ++i) {
        const double x = z.v[i];
        r.v[i] = tanh_form ? 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x)))
                           : 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
        r.err[i] = 1.13 * z.err[i] + 10 * kU * (std::fabs(x) + z.err[i]);
    }
    return r;
}

Ref swiglu_ref(const Ref& g, const Ref& u) {
    Ref r{std::vector<double>(g.v.size()), std::vector<double>(g.v.size())};
    for (size_t i = 0; i < g.v.size(); ++i) {
        const double silu = g.v[i] / (1.0 + std::exp(-g.v[i]));
        r.v[i] = silu * u.v[i];
        // silu(g') u' - silu(g) u = (silu(g') - silu(g)) u' + silu(g) (u' - u); then the f32 evaluation.
        r.err[i] = 1.1 * g.err[i] * (std::fabs(u.v[i]) + u.err[i]) + std::fabs(silu) * u.err[i] +
                   8 * kU * std::fabs(r.v[i]) + 1e-30;
    }
    return r;
}

Ref add_ref(const Ref& a, const std::vector<float>& residual) {
    Ref r{std::vector<double>(a.v.size()), std::vector<double>(a.v.size())};
    for (size_t i = 0; i < a.v.size(); ++i) {
        r.v[i] = a.v[i] + residual[i];
        r.err[i] = a.err[i] * (1 + kU) + kU * std::fabs(r.v[i]);
    }
    return r;
}

// Every element within its bound (false for NaN: the outputs are poisoned, so an unwritten element fails) and
// NMSE <= 1e-9.
::testing::AssertionResult matches(const std::vector<float>& got, const Ref& want) {
    if (got.size() != want.v.size())
        return ::testing::AssertionFailure() << got.size() << " elements, want " << want.v.size();
    for (size_t i = 0; i < got.size(); ++i)
        if (!(std::fabs(got[i] - want.v[i]) <= want.err[i]))
            return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", want " << want.v[i]
                                                 << " (bound " << want.err[i] << ")";
    const double e = nmse(got, want.v);
    if (!(e <= 1e-9)) return ::testing::AssertionFailure() << "NMSE " << e << " > 1e-9";
    return ::testing::AssertionSuccess();
}

std::string shape_text(int64_t M, int64_t K, int64_t N) {
    return "M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N);
}

struct Shape {
    int64_t M, K, N;
};

// Every (M, N) of the brief with the short Ks; the long Ks on a subset that still covers GEMV (M <= 4), GEMM edge
// tiles (M, N not multiples of 6, 16) and several K blocks with a tail.
std::vector<Shape> shapes() {
    std::vector<Shape> s;
    for (int64_t M : {1, 3, 7, 17, 64, 130})
        for (int64_t N : {1, 7, 33, 257})
            for (int64_t K : {1, 5, 63}) s.push_back({M, K, N});
    for (Shape sh : {Shape{1, 1536, 257}, Shape{1, 2049, 33}, Shape{3, 2049, 7}, Shape{2, 1536, 33},
                     Shape{7, 1536, 257}, Shape{17, 2049, 33}, Shape{64, 2049, 257}, Shape{130, 1536, 33},
                     Shape{130, 2049, 257}, Shape{4, 2049, 1}, Shape{5, 1536, 7}})
        s.push_back(sh);
    return s;
}

const qwen3vl_dtype kDtypes[] = {QWEN3VL_DTYPE_BF16, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_F32};

TEST(Linear, MatchesDoubleReferenceOnAllPathsDtypesAndShapes) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    ThreadPool pool(3);  // more threads than this 2-core machine has: uneven splits, preemption
    size_t case_index = 0;
    for (const Shape& sh : shapes()) {
        for (qwen3vl_dtype wt : kDtypes) {
            const int64_t M = sh.M, K = sh.K, N = sh.N;
            const bool with_bias = (case_index++ % 2) == 0;
            const std::vector<float> x = random_floats(rng, size_t(M * K));
            const Stored w = make_stored(rng, wt, size_t(N * K), case_index % 3);  // 0, 1 or 2 bytes off
            const Stored bias = make_stored(rng, kDtypes[case_index % 3], size_t(N), 1);
            std::vector<double> ref, mag;
            reference(x, w.values, with_bias ? &bias.values : nullptr, M, K, N, ref, mag);
            for (CpuKernels kernels : kernel_sets()) {
                SCOPED_TRACE(shape_text(M, K, N) + " weight " + dtype_name(wt) + (with_bias ? " +bias" : "") +
                             " kernels " + cpu_kernels_name(kernels));
                std::vector<float> out(size_t(M * N), std::numeric_limits<float>::quiet_NaN());
                cpu::linear(pool, out.data(), x.data(), M, K, N, w.view(),
                            with_bias ? bias.view() : Weight{}, kernels);
                const double bound = gamma_n(double(K + 2));
                for (size_t i = 0; i < out.size(); ++i)
                    ASSERT_TRUE(std::fabs(out[i] - ref[i]) <= bound * mag[i])
                        << "element " << i << ": got " << out[i] << ", want " << ref[i] << " (bound "
                        << bound * mag[i] << ")";
                EXPECT_LE(nmse(out, ref), 1e-9);
            }
        }
    }
}

// silu(g) * u with g, u as above: swiglu_ref's bound (|silu'| <= 1.1, the vector exp / division add a few ulp).
TEST(LinearSwiglu, MatchesDoubleReferenceWithMixedDtypes) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    ThreadPool pool(2);
    size_t case_index = 0;
    for (const Shape& sh : shapes()) {
        const int64_t M = sh.M, K = sh.K, N = sh.N;
        const qwen3vl_dtype gt = kDtypes[case_index % 3], ut = kDtypes[(case_index + case_index / 3) % 3];
        ++case_index;
        const std::vector<float> x = random_floats(rng, size_t(M * K));
        const Stored g = make_stored(rng, gt, size_t(N * K), case_index % 2);
        const Stored u = make_stored(rng, ut, size_t(N * K), 0);
        const Ref ref = swiglu_ref(linear_ref(exact(x), g.values, nullptr, M, K, N),
                                   linear_ref(exact(x), u.values, nullptr, M, K, N));
        for (CpuKernels kernels : kernel_sets()) {
            SCOPED_TRACE(shape_text(M, K, N) + " gate " + dtype_name(gt) + " up " + dtype_name(ut) + " kernels " +
                         cpu_kernels_name(kernels));
            std::vector<float> out(size_t(M * N), std::numeric_limits<float>::quiet_NaN());
            cpu::linear_swiglu(pool, out.data(), x.data(), M, K, N, g.view(), u.view(), kernels);
            ASSERT_TRUE(matches(out, ref));
        }
    }
}

TEST(Linear, SingleThreadPoolAndDecodeSizedRowsAgree) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    ThreadPool one(1);
    for (int64_t M : {1, 2, 4, 5, 6, 8}) {
        const int64_t K = 2048, N = 300;
        const std::vector<float> x = random_floats(rng, size_t(M * K));
        const Stored w = make_stored(rng, QWEN3VL_DTYPE_BF16, size_t(N * K), 0);
        std::vector<double> ref, mag;
        reference(x, w.values, nullptr, M, K, N, ref, mag);
        for (CpuKernels kernels : kernel_sets()) {
            SCOPED_TRACE(shape_text(M, K, N) + " kernels " + cpu_kernels_name(kernels));
            std::vector<float> out(size_t(M * N), std::numeric_limits<float>::quiet_NaN());
            cpu::linear(one, out.data(), x.data(), M, K, N, w.view(), Weight{}, kernels);
            for (size_t i = 0; i < out.size(); ++i)
                ASSERT_TRUE(std::fabs(out[i] - ref[i]) <= gamma_n(double(K + 2)) * mag[i]) << "element " << i;
        }
    }
}

TEST(Linear, EmptySumsGiveTheBiasOrZero) {
    ThreadPool pool(2);
    const float bias[3] = {1.5f, -2.0f, 0.25f};
    for (CpuKernels kernels : kernel_sets()) {
        std::vector<float> out(6, std::numeric_limits<float>::quiet_NaN());
        cpu::linear(pool, out.data(), nullptr, 2, 0, 3, Weight{}, {bias, QWEN3VL_DTYPE_F32}, kernels);
        EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f, 0.25f, 1.5f, -2.0f, 0.25f}));
        cpu::linear_swiglu(pool, out.data(), nullptr, 2, 0, 3, Weight{}, Weight{}, kernels);
        EXPECT_EQ(out, std::vector<float>(6, 0.0f));
        cpu::linear(pool, nullptr, nullptr, 0, 4, 3, Weight{}, Weight{}, kernels);  // no rows
    }
}

// ---- C API: the exported functions (the shared library links its own copy of the engine).

BackendPtr cpu_backend() {
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    qwen3vl_backend* b = nullptr;
    EXPECT_EQ(qwen3vl_backend_create(&p, &b), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    return BackendPtr(b);
}

TensorPtr tensor(qwen3vl_backend* b, qwen3vl_dtype dtype, std::vector<int64_t> shape, const std::vector<float>& data = {}) {
    qwen3vl_tensor* t = nullptr;
    EXPECT_EQ(qwen3vl_tensor_create(b, dtype, int32_t(shape.size()), shape.data(), &t), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    if (!data.empty())
        EXPECT_EQ(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, data.data(), data.size() * 4), QWEN3VL_STATUS_OK)
            << qwen3vl_last_error();
    return TensorPtr(t);
}

void expect_invalid(qwen3vl_status s, const std::string& fragment) {
    EXPECT_EQ(s, QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qwen3vl_last_error()).find(fragment), std::string::npos)
        << "message: " << qwen3vl_last_error() << "\nexpected to contain: " << fragment;
}

TEST(LinearCApi, ThreeDimensionalXWithBf16WeightAndBias) {
    std::mt19937 rng(fresh_seed());
    BackendPtr b = cpu_backend();
    const int64_t K = 70, N = 19;
    const std::vector<float> xv = random_floats(rng, size_t(2 * 3 * K));
    // Values exactly representable in bf16, so the tensor write is lossless and the reference exact.
    std::vector<float> wv = random_floats(rng, size_t(N * K)), bv = random_floats(rng, size_t(N));
    for (auto& f : wv) f = bf16_to_f32(f32_to_bf16(f));
    for (auto& f : bv) f = bf16_to_f32(f32_to_bf16(f));
    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {2, 3, K}, xv);
    TensorPtr w = tensor(b.get(), QWEN3VL_DTYPE_BF16, {N, K}, wv);
    TensorPtr bias = tensor(b.get(), QWEN3VL_DTYPE_BF16, {N}, bv);
    TensorPtr out = tensor(b.get(), QWEN3VL_DTYPE_F32, {2, 3, N});
    ASSERT_EQ(qwen3vl_op_linear(out.get(), x.get(), w.get(), bias.get()), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    std::vector<float> got(size_t(6 * N));
    ASSERT_EQ(qwen3vl_tensor_read(out.get(), QWEN3VL_DTYPE_F32, got.data(), got.size() * 4), QWEN3VL_STATUS_OK);
    std::vector<double> ref, mag;
    reference(xv, wv, &bv, 6, K, N, ref, mag);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LE(std::fabs(got[i] - ref[i]), gamma_n(K + 2) * mag[i]) << i;

    TensorPtr up = tensor(b.get(), QWEN3VL_DTYPE_BF16, {N, K}, wv);
    ASSERT_EQ(qwen3vl_op_linear_swiglu(out.get(), x.get(), w.get(), up.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
}

TEST(LinearCApi, BadArgumentsNameTheTensor) {
    BackendPtr b = cpu_backend();
    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 8});
    TensorPtr w = tensor(b.get(), QWEN3VL_DTYPE_F16, {5, 8});
    TensorPtr out = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 5});
    TensorPtr bias = tensor(b.get(), QWEN3VL_DTYPE_F32, {5});
    ASSERT_EQ(qwen3vl_op_linear(out.get(), x.get(), w.get(), bias.get()), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    ASSERT_EQ(qwen3vl_op_linear(out.get(), x.get(), w.get(), nullptr), QWEN3VL_STATUS_OK) << qwen3vl_last_error();

    expect_invalid(qwen3vl_op_linear(nullptr, x.get(), w.get(), nullptr), "qwen3vl_op_linear: out is NULL");
    expect_invalid(qwen3vl_op_linear(out.get(), nullptr, w.get(), nullptr), "qwen3vl_op_linear: x is NULL");
    expect_invalid(qwen3vl_op_linear(out.get(), x.get(), nullptr, nullptr), "qwen3vl_op_linear: weight is NULL");

    TensorPtr w_badk = tensor(b.get(), QWEN3VL_DTYPE_BF16, {5, 9});
    expect_invalid(qwen3vl_op_linear(out.get(), x.get(), w_badk.get(), nullptr), "weight has shape [5, 9], expected [*, 8]");
    TensorPtr w_3d = tensor(b.get(), QWEN3VL_DTYPE_BF16, {1, 5, 8});
    expect_invalid(qwen3vl_op_linear(out.get(), x.get(), w_3d.get(), nullptr), "weight has shape");
    TensorPtr bias_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {4});
    expect_invalid(qwen3vl_op_linear(out.get(), x.get(), w.get(), bias_bad.get()), "bias has shape [4], expected [5]");
    TensorPtr out_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 6});
    expect_invalid(qwen3vl_op_linear(out_bad.get(), x.get(), w.get(), nullptr), "out has shape [4, 6], expected [4, 5]");
    TensorPtr out_flat = tensor(b.get(), QWEN3VL_DTYPE_F32, {20});
    expect_invalid(qwen3vl_op_linear(out_flat.get(), x.get(), w.get(), nullptr), "out has shape [20]");

    TensorPtr x_bf16 = tensor(b.get(), QWEN3VL_DTYPE_BF16, {4, 8});
    expect_invalid(qwen3vl_op_linear(out.get(), x_bf16.get(), w.get(), nullptr), "x must be f32, got bf16");
    TensorPtr w_i32 = tensor(b.get(), QWEN3VL_DTYPE_I32, {5, 8});
    expect_invalid(qwen3vl_op_linear(out.get(), x.get(), w_i32.get(), nullptr), "weight must be f32 or f16 or bf16");
    TensorPtr bias_i32 = tensor(b.get(), QWEN3VL_DTYPE_I32, {5});
    expect_invalid(qwen3vl_op_linear(out.get(), x.get(), w.get(), bias_i32.get()), "bias must be");
    TensorPtr out_f16 = tensor(b.get(), QWEN3VL_DTYPE_F16, {4, 5});
    expect_invalid(qwen3vl_op_linear(out_f16.get(), x.get(), w.get(), nullptr), "out must be f32");

    // out aliasing x: a view over x's memory.
    TensorPtr xs = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 5});
    expect_invalid(qwen3vl_op_linear(xs.get(), xs.get(), tensor(b.get(), QWEN3VL_DTYPE_F32, {5, 5}).get(), nullptr),
                   "out overlaps x");
    const int64_t vshape[2] = {2, 5};
    qwen3vl_tensor* view = nullptr;
    ASSERT_EQ(qwen3vl_tensor_view(xs.get(), 10, 2, vshape, &view), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    TensorPtr view_ptr(view);
    TensorPtr x2 = tensor(b.get(), QWEN3VL_DTYPE_F32, {2, 5});
    TensorPtr w55 = tensor(b.get(), QWEN3VL_DTYPE_F32, {5, 5});
    expect_invalid(qwen3vl_op_linear(view, xs.get(), w55.get(), nullptr), "out has shape");  // shape first
    const int64_t xshape[2] = {2, 5};
    qwen3vl_tensor* xview = nullptr;
    ASSERT_EQ(qwen3vl_tensor_view(xs.get(), 5, 2, xshape, &xview), QWEN3VL_STATUS_OK);
    TensorPtr xview_ptr(xview);
    expect_invalid(qwen3vl_op_linear(view, xview, w55.get(), nullptr), "out overlaps x");  // rows 1-2 vs 2-3
    EXPECT_EQ(qwen3vl_op_linear(view, x2.get(), w55.get(), nullptr), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
}

TEST(LinearCApi, SwigluBadArgumentsNameTheTensor) {
    BackendPtr b = cpu_backend();
    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 8});
    TensorPtr g = tensor(b.get(), QWEN3VL_DTYPE_BF16, {6, 8});
    TensorPtr u = tensor(b.get(), QWEN3VL_DTYPE_F16, {6, 8});
    TensorPtr out = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 6});
    ASSERT_EQ(qwen3vl_op_linear_swiglu(out.get(), x.get(), g.get(), u.get()), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    expect_invalid(qwen3vl_op_linear_swiglu(out.get(), x.get(), g.get(), nullptr), "qwen3vl_op_linear_swiglu: up is NULL");
    expect_invalid(qwen3vl_op_linear_swiglu(out.get(), x.get(), nullptr, u.get()), "gate is NULL");
    TensorPtr u_bad = tensor(b.get(), QWEN3VL_DTYPE_F16, {7, 8});
    expect_invalid(qwen3vl_op_linear_swiglu(out.get(), x.get(), g.get(), u_bad.get()), "up has shape [7, 8], expected [6, 8]");
    TensorPtr g_bad = tensor(b.get(), QWEN3VL_DTYPE_BF16, {6, 4});
    expect_invalid(qwen3vl_op_linear_swiglu(out.get(), x.get(), g_bad.get(), u.get()), "gate has shape [6, 4], expected [*, 8]");
    TensorPtr g_i32 = tensor(b.get(), QWEN3VL_DTYPE_I32, {6, 8});
    expect_invalid(qwen3vl_op_linear_swiglu(out.get(), x.get(), g_i32.get(), u.get()), "gate must be");
    TensorPtr out_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 7});
    expect_invalid(qwen3vl_op_linear_swiglu(out_bad.get(), x.get(), g.get(), u.get()), "out has shape [3, 7], expected [3, 6]");
}

}  // namespace

// ---- The fused ops (norm_linear, norm_linear_swiglu, linear_residual) against the double references above, every
// weight dtype, outputs poisoned with NaN.

namespace {

std::vector<float> read(const qwen3vl_tensor* t) {
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    EXPECT_EQ(qwen3vl_tensor_describe(t, &d), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    std::vector<float> v(size_t(d.bytes / dtype_size(d.dtype)));
    EXPECT_EQ(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    return v;
}

TensorPtr rand_tensor(qwen3vl_backend* b, std::mt19937& rng, qwen3vl_dtype dt, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    return tensor(b, dt, std::move(shape), random_floats(rng, n));
}

TensorPtr nan_tensor(qwen3vl_backend* b, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    const std::vector<float> nan(n, std::numeric_limits<float>::quiet_NaN());
    return tensor(b, QWEN3VL_DTYPE_F32, std::move(shape), nan);
}

TEST(FusedLinearCApi, NormLinearMatchesDoubleReference) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    BackendPtr b = cpu_backend();
    size_t case_index = 0;
    for (int64_t M : {1, 3, 9, 64})
        for (int64_t K : {64, 1000})
            for (int count = 1; count <= 3; ++count)
                for (bool with_norm : {true, false}) {
                    const int64_t Ns[3] = {48, 16, 33};
                    const qwen3vl_dtype nt = kDtypes[case_index % 3];
                    ++case_index;
                    SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " weights " +
                                 std::to_string(count) + (with_norm ? " norm " + std::string(dtype_name(nt)) : ""));
                    const std::vector<float> xv = scaled_rows(rng, M, K);
                    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, K}, xv);
                    TensorPtr nw = rand_tensor(b.get(), rng, nt, {K});
                    std::vector<TensorPtr> w, out;
                    for (int i = 0; i < count; ++i) {
                        w.push_back(rand_tensor(b.get(), rng, kDtypes[(case_index + size_t(i)) % 3], {Ns[i], K}));
                        out.push_back(nan_tensor(b.get(), {M, Ns[i]}));
                    }
                    auto slot_out = [&](int i) { return i < count ? out[size_t(i)].get() : nullptr; };
                    auto slot_w = [&](int i) { return i < count ? w[size_t(i)].get() : nullptr; };
                    ASSERT_EQ(qwen3vl_op_norm_linear(slot_out(0), slot_w(0), slot_out(1), slot_w(1), slot_out(2),
                                                     slot_w(2), x.get(), with_norm ? nw.get() : nullptr, 1e-6f),
                              QWEN3VL_STATUS_OK)
                        << qwen3vl_last_error();
                    const Ref y = with_norm ? rms_norm_ref(xv, read(nw.get()), M, K, 1e-6f) : exact(xv);
                    for (int i = 0; i < count; ++i)
                        ASSERT_TRUE(matches(read(out[size_t(i)].get()),
                                            linear_ref(y, read(w[size_t(i)].get()), nullptr, M, K, Ns[i])))
                            << "output " << i;
                }
}

TEST(FusedLinearCApi, NormLinearSwigluMatchesDoubleReference) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    BackendPtr b = cpu_backend();
    size_t case_index = 0;
    for (int64_t M : {1, 3, 9, 64})
        for (int64_t K : {64, 1000})
            for (bool with_norm : {true, false}) {
                const int64_t N = 40;
                const qwen3vl_dtype gt = kDtypes[case_index % 3], ut = kDtypes[(case_index / 3) % 3];
                ++case_index;
                SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " gate " + dtype_name(gt) +
                             " up " + dtype_name(ut) + (with_norm ? " norm" : ""));
                const std::vector<float> xv = scaled_rows(rng, M, K);
                TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, K}, xv);
                TensorPtr nw = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_BF16, {K});
                TensorPtr g = rand_tensor(b.get(), rng, gt, {N, K}), u = rand_tensor(b.get(), rng, ut, {N, K});
                TensorPtr out = nan_tensor(b.get(), {M, N});
                ASSERT_EQ(qwen3vl_op_norm_linear_swiglu(out.get(), x.get(), with_norm ? nw.get() : nullptr, 1e-5f,
                                                        g.get(), u.get()),
                          QWEN3VL_STATUS_OK)
                    << qwen3vl_last_error();
                const Ref y = with_norm ? rms_norm_ref(xv, read(nw.get()), M, K, 1e-5f) : exact(xv);
                ASSERT_TRUE(matches(read(out.get()), swiglu_ref(linear_ref(y, read(g.get()), nullptr, M, K, N),
                                                                linear_ref(y, read(u.get()), nullptr, M, K, N))));
            }
}

TEST(FusedLinearCApi, LinearResidualMatchesDoubleReference) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    BackendPtr b = cpu_backend();
    size_t case_index = 0;
    for (int64_t M : {1, 3, 9, 64})
        for (int64_t K : {64, 1000})
            for (bool with_bias : {true, false})
                for (bool in_place : {true, false}) {
                    const int64_t N = 37;
                    const qwen3vl_dtype wt = kDtypes[case_index++ % 3];
                    SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + dtype_name(wt) +
                                 (with_bias ? " bias" : "") + (in_place ? " in place" : ""));
                    const std::vector<float> xv = random_floats(rng, size_t(M * K));
                    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, K}, xv);
                    TensorPtr w = rand_tensor(b.get(), rng, wt, {N, K});
                    TensorPtr bias = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_BF16, {N});
                    const std::vector<float> rv = random_floats(rng, size_t(M * N));
                    TensorPtr residual = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, N}, rv);
                    TensorPtr out = in_place ? nullptr : nan_tensor(b.get(), {M, N});
                    qwen3vl_tensor* o = in_place ? residual.get() : out.get();
                    ASSERT_EQ(qwen3vl_op_linear_residual(o, x.get(), w.get(), with_bias ? bias.get() : nullptr,
                                                         residual.get()),
                              QWEN3VL_STATUS_OK)
                        << qwen3vl_last_error();
                    const std::vector<float> bv = read(bias.get());
                    const Ref want = add_ref(linear_ref(exact(xv), read(w.get()), with_bias ? &bv : nullptr, M, K, N), rv);
                    ASSERT_TRUE(matches(read(o), want));
                    if (!in_place) EXPECT_EQ(read(residual.get()), rv);  // the residual input is left alone
                }
}

TEST(FusedLinearCApi, ThreeDimensionalX) {
    std::mt19937 rng(fresh_seed());
    BackendPtr b = cpu_backend();
    const int64_t K = 24;
    TensorPtr x = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_F32, {2, 3, K});
    TensorPtr nw = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_F32, {K});
    TensorPtr w0 = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_BF16, {5, K});
    TensorPtr w1 = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_BF16, {7, K});
    TensorPtr o0 = nan_tensor(b.get(), {2, 3, 5}), o1 = nan_tensor(b.get(), {2, 3, 7});
    EXPECT_EQ(qwen3vl_op_norm_linear(o0.get(), w0.get(), o1.get(), w1.get(), nullptr, nullptr, x.get(), nw.get(),
                                     1e-6f),
              QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    TensorPtr up = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_BF16, {5, K});
    EXPECT_EQ(qwen3vl_op_norm_linear_swiglu(o0.get(), x.get(), nw.get(), 1e-6f, w0.get(), up.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    TensorPtr r = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_F32, {2, 3, 5});
    EXPECT_EQ(qwen3vl_op_linear_residual(r.get(), x.get(), w0.get(), nullptr, r.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    for (const TensorPtr* t : {&o0, &o1, &r})
        for (float v : read(t->get())) ASSERT_TRUE(std::isfinite(v));
}

TEST(FusedLinearCApi, NormLinearBadArguments) {
    BackendPtr b = cpu_backend();
    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 8});
    TensorPtr nw = tensor(b.get(), QWEN3VL_DTYPE_BF16, {8});
    TensorPtr w0 = tensor(b.get(), QWEN3VL_DTYPE_BF16, {5, 8}), w1 = tensor(b.get(), QWEN3VL_DTYPE_F16, {3, 8});
    TensorPtr w2 = tensor(b.get(), QWEN3VL_DTYPE_F32, {2, 8});
    TensorPtr o0 = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 5}), o1 = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 3});
    TensorPtr o2 = tensor(b.get(), QWEN3VL_DTYPE_F32, {4, 2});
    const float eps = 1e-6f;
    qwen3vl_tensor* const no = nullptr;
    auto nl = [&](qwen3vl_tensor* a0, const qwen3vl_tensor* b0, qwen3vl_tensor* a1, const qwen3vl_tensor* b1,
                  qwen3vl_tensor* a2, const qwen3vl_tensor* b2, const qwen3vl_tensor* in, const qwen3vl_tensor* n) {
        return qwen3vl_op_norm_linear(a0, b0, a1, b1, a2, b2, in, n, eps);
    };
    ASSERT_EQ(nl(o0.get(), w0.get(), o1.get(), w1.get(), o2.get(), w2.get(), x.get(), nw.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    ASSERT_EQ(nl(o0.get(), w0.get(), no, no, no, no, x.get(), no), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();

    expect_invalid(nl(no, w0.get(), no, no, no, no, x.get(), no), "qwen3vl_op_norm_linear: out0 is NULL");
    expect_invalid(nl(o0.get(), no, no, no, no, no, x.get(), no), "weight0 is NULL");
    expect_invalid(nl(o0.get(), w0.get(), o1.get(), no, no, no, x.get(), no),
                   "out1 and weight1 must both be given or both be NULL");
    expect_invalid(nl(o0.get(), w0.get(), no, w1.get(), no, no, x.get(), no),
                   "out1 and weight1 must both be given or both be NULL");
    expect_invalid(nl(o0.get(), w0.get(), o1.get(), w1.get(), o2.get(), no, x.get(), no),
                   "out2 and weight2 must both be given or both be NULL");
    expect_invalid(nl(o0.get(), w0.get(), no, no, o2.get(), w2.get(), x.get(), no),
                   "out2/weight2 given without out1/weight1");
    expect_invalid(nl(o0.get(), w0.get(), no, no, no, no, no, no), "x is NULL");

    TensorPtr w_badk = tensor(b.get(), QWEN3VL_DTYPE_BF16, {3, 9});
    expect_invalid(nl(o0.get(), w0.get(), o1.get(), w_badk.get(), no, no, x.get(), no),
                   "weight1 has shape [3, 9], expected [*, 8]");
    expect_invalid(nl(o0.get(), w0.get(), o2.get(), w1.get(), no, no, x.get(), no),
                   "out1 has shape [4, 2], expected [4, 3]");
    TensorPtr nw_bad = tensor(b.get(), QWEN3VL_DTYPE_BF16, {7});
    expect_invalid(nl(o0.get(), w0.get(), no, no, no, no, x.get(), nw_bad.get()),
                   "norm_weight has shape [7], expected [8]");
    TensorPtr nw_i32 = tensor(b.get(), QWEN3VL_DTYPE_I32, {8});
    expect_invalid(nl(o0.get(), w0.get(), no, no, no, no, x.get(), nw_i32.get()),
                   "norm_weight must be f32 or f16 or bf16");
    TensorPtr o_f16 = tensor(b.get(), QWEN3VL_DTYPE_F16, {4, 5});
    expect_invalid(nl(o_f16.get(), w0.get(), no, no, no, no, x.get(), no), "out0 must be f32");
    for (float bad_eps : {-1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()})
        expect_invalid(qwen3vl_op_norm_linear(o0.get(), w0.get(), no, no, no, no, x.get(), nw.get(), bad_eps),
                       "eps must be finite and >= 0");

    // Overlaps: an output over x, over another output, over a weight, over the norm weight.
    TensorPtr big = tensor(b.get(), QWEN3VL_DTYPE_F32, {64});
    const int64_t s45[2] = {4, 5}, s43[2] = {4, 3}, s48[2] = {4, 8}, s38[2] = {3, 8}, s8[1] = {8};
    qwen3vl_tensor *va = nullptr, *vb = nullptr, *vx = nullptr, *vw = nullptr, *vn = nullptr;
    ASSERT_EQ(qwen3vl_tensor_view(big.get(), 0, 2, s45, &va), QWEN3VL_STATUS_OK);
    TensorPtr va_ptr(va);
    ASSERT_EQ(qwen3vl_tensor_view(big.get(), 10, 2, s43, &vb), QWEN3VL_STATUS_OK);  // inside va (elements 0..19)
    TensorPtr vb_ptr(vb);
    ASSERT_EQ(qwen3vl_tensor_view(big.get(), 16, 2, s48, &vx), QWEN3VL_STATUS_OK);  // elements 16..47
    TensorPtr vx_ptr(vx);
    expect_invalid(nl(va, w0.get(), no, no, no, no, vx, no), "out0 overlaps x");
    expect_invalid(nl(o0.get(), w0.get(), vb, w1.get(), no, no, vx, no), "out1 overlaps x");
    expect_invalid(nl(va, w0.get(), vb, w1.get(), no, no, x.get(), no), "out0 overlaps out1");
    TensorPtr wbig = tensor(b.get(), QWEN3VL_DTYPE_F32, {64});
    ASSERT_EQ(qwen3vl_tensor_view(wbig.get(), 0, 2, s38, &vw), QWEN3VL_STATUS_OK);
    TensorPtr vw_ptr(vw);
    ASSERT_EQ(qwen3vl_tensor_view(wbig.get(), 32, 1, s8, &vn), QWEN3VL_STATUS_OK);
    TensorPtr vn_ptr(vn);
    qwen3vl_tensor* o_on_w = nullptr;
    ASSERT_EQ(qwen3vl_tensor_view(wbig.get(), 20, 2, s43, &o_on_w), QWEN3VL_STATUS_OK);  // elements 20..31
    TensorPtr o_on_w_ptr(o_on_w);
    expect_invalid(nl(o0.get(), w0.get(), o_on_w, vw, no, no, x.get(), no), "out1 overlaps weight1");
    expect_invalid(nl(o_on_w, vw, no, no, no, no, x.get(), no), "out0 overlaps weight0");
    qwen3vl_tensor* o_on_n = nullptr;
    ASSERT_EQ(qwen3vl_tensor_view(wbig.get(), 30, 2, s43, &o_on_n), QWEN3VL_STATUS_OK);  // elements 30..41
    TensorPtr o_on_n_ptr(o_on_n);
    expect_invalid(nl(o_on_n, w1.get(), no, no, no, no, x.get(), vn), "out0 overlaps norm_weight");
    EXPECT_EQ(nl(o_on_n, w1.get(), no, no, no, no, x.get(), nw.get()),
              QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
}

TEST(FusedLinearCApi, SwigluAndResidualBadArguments) {
    BackendPtr b = cpu_backend();
    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 8});
    TensorPtr nw = tensor(b.get(), QWEN3VL_DTYPE_F32, {8});
    TensorPtr g = tensor(b.get(), QWEN3VL_DTYPE_BF16, {6, 8}), u = tensor(b.get(), QWEN3VL_DTYPE_BF16, {6, 8});
    TensorPtr out = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 6});
    ASSERT_EQ(qwen3vl_op_norm_linear_swiglu(out.get(), x.get(), nw.get(), 1e-6f, g.get(), u.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    expect_invalid(qwen3vl_op_norm_linear_swiglu(out.get(), x.get(), nw.get(), 1e-6f, g.get(), nullptr),
                   "qwen3vl_op_norm_linear_swiglu: up is NULL");
    TensorPtr u_bad = tensor(b.get(), QWEN3VL_DTYPE_BF16, {7, 8});
    expect_invalid(qwen3vl_op_norm_linear_swiglu(out.get(), x.get(), nw.get(), 1e-6f, g.get(), u_bad.get()),
                   "up has shape [7, 8], expected [6, 8]");
    TensorPtr nw_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {6});
    expect_invalid(qwen3vl_op_norm_linear_swiglu(out.get(), x.get(), nw_bad.get(), 1e-6f, g.get(), u.get()),
                   "norm_weight has shape [6], expected [8]");
    expect_invalid(qwen3vl_op_norm_linear_swiglu(out.get(), x.get(), nw.get(), -1e-6f, g.get(), u.get()),
                   "eps must be finite and >= 0");
    TensorPtr out_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 7});
    expect_invalid(qwen3vl_op_norm_linear_swiglu(out_bad.get(), x.get(), nullptr, 1e-6f, g.get(), u.get()),
                   "out has shape [3, 7], expected [3, 6]");

    TensorPtr w = tensor(b.get(), QWEN3VL_DTYPE_F16, {6, 8});
    TensorPtr bias = tensor(b.get(), QWEN3VL_DTYPE_F32, {6});
    TensorPtr res = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 6});
    ASSERT_EQ(qwen3vl_op_linear_residual(out.get(), x.get(), w.get(), bias.get(), res.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    ASSERT_EQ(qwen3vl_op_linear_residual(res.get(), x.get(), w.get(), nullptr, res.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    expect_invalid(qwen3vl_op_linear_residual(out.get(), x.get(), w.get(), nullptr, nullptr),
                   "qwen3vl_op_linear_residual: residual is NULL");
    TensorPtr res_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 5});
    expect_invalid(qwen3vl_op_linear_residual(out.get(), x.get(), w.get(), nullptr, res_bad.get()),
                   "residual has shape [3, 5], expected [3, 6]");
    TensorPtr res_f16 = tensor(b.get(), QWEN3VL_DTYPE_F16, {3, 6});
    expect_invalid(qwen3vl_op_linear_residual(out.get(), x.get(), w.get(), nullptr, res_f16.get()),
                   "residual must be f32");
    TensorPtr bias_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {5});
    expect_invalid(qwen3vl_op_linear_residual(out.get(), x.get(), w.get(), bias_bad.get(), res.get()),
                   "bias has shape [5], expected [6]");
    // out may be residual, not a shifted view of it; x must not overlap out.
    TensorPtr big = tensor(b.get(), QWEN3VL_DTYPE_F32, {40});
    const int64_t s36[2] = {3, 6}, s38[2] = {3, 8};
    qwen3vl_tensor *r0 = nullptr, *r1 = nullptr, *xv = nullptr;
    ASSERT_EQ(qwen3vl_tensor_view(big.get(), 0, 2, s36, &r0), QWEN3VL_STATUS_OK);
    TensorPtr r0_ptr(r0);
    ASSERT_EQ(qwen3vl_tensor_view(big.get(), 2, 2, s36, &r1), QWEN3VL_STATUS_OK);
    TensorPtr r1_ptr(r1);
    expect_invalid(qwen3vl_op_linear_residual(r0, x.get(), w.get(), nullptr, r1), "out partly overlaps residual");
    ASSERT_EQ(qwen3vl_tensor_view(big.get(), 16, 2, s38, &xv), QWEN3VL_STATUS_OK);
    TensorPtr xv_ptr(xv);
    expect_invalid(qwen3vl_op_linear_residual(r0, xv, w.get(), nullptr, r0), "out overlaps x");
}

}  // namespace

// ---- The vision ops (linear_gelu, layer_norm_linear, mlp_gelu) against the double references above, in place or
// not.

namespace {

TEST(VisionLinearCApi, LinearGeluMatchesDoubleReference) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    BackendPtr b = cpu_backend();
    size_t case_index = 0;
    for (int64_t M : {1, 3, 9, 64})
        for (int64_t K : {64, 1000})
            for (bool with_bias : {true, false})
                for (int32_t tanh_form : {0, 1}) {
                    const int64_t N = 45;
                    const qwen3vl_dtype wt = kDtypes[case_index % 3], bt = kDtypes[(case_index / 3) % 3];
                    ++case_index;
                    SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + dtype_name(wt) +
                                 (with_bias ? " bias " + std::string(dtype_name(bt)) : "") +
                                 " tanh=" + std::to_string(tanh_form));
                    const std::vector<float> xv = random_floats(rng, size_t(M * K));
                    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, K}, xv);
                    TensorPtr w = rand_tensor(b.get(), rng, wt, {N, K}), bias = rand_tensor(b.get(), rng, bt, {N});
                    TensorPtr out = nan_tensor(b.get(), {M, N});
                    ASSERT_EQ(qwen3vl_op_linear_gelu(out.get(), x.get(), w.get(), with_bias ? bias.get() : nullptr,
                                                     tanh_form),
                              QWEN3VL_STATUS_OK)
                        << qwen3vl_last_error();
                    const std::vector<float> bv = read(bias.get());
                    const Ref z = linear_ref(exact(xv), read(w.get()), with_bias ? &bv : nullptr, M, K, N);
                    ASSERT_TRUE(matches(read(out.get()), gelu_ref(z, tanh_form == 1)));
                }
}

TEST(VisionLinearCApi, LayerNormLinearMatchesDoubleReference) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    BackendPtr b = cpu_backend();
    size_t case_index = 0;
    for (int64_t M : {1, 3, 9, 64})
        for (int64_t K : {1, 64, 1000})
            for (bool with_bias : {true, false}) {
                const int64_t N = 37;
                const qwen3vl_dtype wt = kDtypes[case_index % 3], nt = kDtypes[(case_index / 3) % 3];
                ++case_index;
                SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " " + dtype_name(wt) + " norm " +
                             dtype_name(nt) + (with_bias ? " bias" : ""));
                const std::vector<float> xv = scaled_rows(rng, M, K);
                TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, K}, xv);
                TensorPtr nw = rand_tensor(b.get(), rng, nt, {K}), nb = rand_tensor(b.get(), rng, nt, {K});
                TensorPtr w = rand_tensor(b.get(), rng, wt, {N, K}), bias = rand_tensor(b.get(), rng, wt, {N});
                TensorPtr out = nan_tensor(b.get(), {M, N});
                ASSERT_EQ(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nw.get(), nb.get(), 1e-6f, w.get(),
                                                       with_bias ? bias.get() : nullptr),
                          QWEN3VL_STATUS_OK)
                    << qwen3vl_last_error();
                const std::vector<float> bv = read(bias.get());
                const Ref y = layer_norm_ref(xv, read(nw.get()), read(nb.get()), M, K, 1e-6f);
                ASSERT_TRUE(matches(read(out.get()), linear_ref(y, read(w.get()), with_bias ? &bv : nullptr, M, K, N)));
            }
}

// A view of base (elements offset .. offset + the shape's count).
TensorPtr view_of(const TensorPtr& base, int64_t offset, std::vector<int64_t> shape) {
    qwen3vl_tensor* v = nullptr;
    EXPECT_EQ(qwen3vl_tensor_view(base.get(), offset, int32_t(shape.size()), shape.data(), &v), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    return TensorPtr(v);
}

// Where mlp_gelu writes: a separate tensor, the residual (out = residual), or x itself (out = x, with or without x
// as the residual too: the vision block's x += mlp(norm2(x))).
enum class MlpOut { kSeparate, kResidual, kX, kXAndResidual };

TEST(VisionLinearCApi, MlpGeluMatchesDoubleReference) {
    const uint32_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)");
    std::mt19937 rng(seed);
    BackendPtr b = cpu_backend();
    size_t case_index = 0;
    for (int64_t M : {1, 3, 9, 64})
        for (MlpOut where : {MlpOut::kSeparate, MlpOut::kResidual, MlpOut::kX, MlpOut::kXAndResidual})
            for (bool with_norm : {true, false})
                for (bool with_residual : {true, false}) {
                    if (!with_residual && (where == MlpOut::kResidual || where == MlpOut::kXAndResidual)) continue;
                    const int64_t K = 48, I = 200;
                    const int64_t N = where == MlpOut::kX || where == MlpOut::kXAndResidual ? K : 40;
                    const qwen3vl_dtype w1t = kDtypes[case_index % 3], w2t = kDtypes[(case_index / 3) % 3];
                    const int32_t tanh_form = int32_t(case_index % 2);
                    const bool with_biases = case_index % 4 != 3;
                    ++case_index;
                    SCOPED_TRACE("M=" + std::to_string(M) + " out " + std::to_string(int(where)) +
                                 (with_norm ? " norm" : "") + (with_residual ? " residual" : "") +
                                 (with_biases ? " biases" : "") + " fc1 " + dtype_name(w1t) + " fc2 " +
                                 dtype_name(w2t) + " tanh=" + std::to_string(tanh_form));
                    const std::vector<float> xv = with_norm ? scaled_rows(rng, M, K) : random_floats(rng, size_t(M * K));
                    const std::vector<float> rv = random_floats(rng, size_t(M * N));
                    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, K}, xv);
                    TensorPtr nw = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_BF16, {K});
                    TensorPtr nb = rand_tensor(b.get(), rng, QWEN3VL_DTYPE_F32, {K});
                    TensorPtr w1 = rand_tensor(b.get(), rng, w1t, {I, K}), b1 = rand_tensor(b.get(), rng, w1t, {I});
                    TensorPtr w2 = rand_tensor(b.get(), rng, w2t, {N, I}), b2 = rand_tensor(b.get(), rng, w2t, {N});
                    TensorPtr res = tensor(b.get(), QWEN3VL_DTYPE_F32, {M, N}, rv);
                    TensorPtr separate = nan_tensor(b.get(), {M, N});
                    qwen3vl_tensor* o = where == MlpOut::kSeparate ? separate.get()
                                        : where == MlpOut::kResidual ? res.get()
                                                                     : x.get();
                    const qwen3vl_tensor* r =
                        !with_residual ? nullptr : where == MlpOut::kXAndResidual ? x.get() : res.get();
                    ASSERT_EQ(qwen3vl_op_mlp_gelu(o, x.get(), with_norm ? nw.get() : nullptr,
                                                  with_norm ? nb.get() : nullptr, 1e-6f, w1.get(),
                                                  with_biases ? b1.get() : nullptr, tanh_form, w2.get(),
                                                  with_biases ? b2.get() : nullptr, r),
                              QWEN3VL_STATUS_OK)
                        << qwen3vl_last_error();

                    // The reference from the original x and residual (the op may have overwritten either).
                    const std::vector<float> b1v = read(b1.get()), b2v = read(b2.get());
                    const Ref y = with_norm ? layer_norm_ref(xv, read(nw.get()), read(nb.get()), M, K, 1e-6f) : exact(xv);
                    const Ref h = gelu_ref(linear_ref(y, read(w1.get()), with_biases ? &b1v : nullptr, M, K, I),
                                           tanh_form == 1);
                    Ref want = linear_ref(h, read(w2.get()), with_biases ? &b2v : nullptr, M, I, N);
                    if (with_residual) want = add_ref(want, where == MlpOut::kXAndResidual ? xv : rv);
                    ASSERT_TRUE(matches(read(o), want));
                    if (where != MlpOut::kX && where != MlpOut::kXAndResidual) EXPECT_EQ(read(x.get()), xv);
                    if (where != MlpOut::kResidual) EXPECT_EQ(read(res.get()), rv);
                }
}

TEST(VisionLinearCApi, BadArgumentsNameTheTensor) {
    BackendPtr b = cpu_backend();
    const float eps = 1e-6f;
    TensorPtr x = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 8});
    TensorPtr nw = tensor(b.get(), QWEN3VL_DTYPE_BF16, {8}), nb = tensor(b.get(), QWEN3VL_DTYPE_F32, {8});
    TensorPtr w = tensor(b.get(), QWEN3VL_DTYPE_BF16, {6, 8}), bias = tensor(b.get(), QWEN3VL_DTYPE_BF16, {6});
    TensorPtr out = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 6});

    ASSERT_EQ(qwen3vl_op_linear_gelu(out.get(), x.get(), w.get(), bias.get(), 1), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    expect_invalid(qwen3vl_op_linear_gelu(out.get(), x.get(), w.get(), bias.get(), 2),
                   "qwen3vl_op_linear_gelu: tanh_approximation must be 0 or 1, got 2");
    expect_invalid(qwen3vl_op_linear_gelu(out.get(), x.get(), nullptr, nullptr, 0), "qwen3vl_op_linear_gelu: weight is NULL");
    TensorPtr bias_bad = tensor(b.get(), QWEN3VL_DTYPE_BF16, {5});
    expect_invalid(qwen3vl_op_linear_gelu(out.get(), x.get(), w.get(), bias_bad.get(), 0), "bias has shape [5], expected [6]");
    TensorPtr out_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 7});
    expect_invalid(qwen3vl_op_linear_gelu(out_bad.get(), x.get(), w.get(), nullptr, 0), "out has shape [3, 7], expected [3, 6]");

    ASSERT_EQ(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nw.get(), nb.get(), eps, w.get(), nullptr), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    expect_invalid(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nullptr, nb.get(), eps, w.get(), nullptr),
                   "qwen3vl_op_layer_norm_linear: norm_weight is NULL");
    expect_invalid(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nw.get(), nullptr, eps, w.get(), nullptr),
                   "qwen3vl_op_layer_norm_linear: norm_bias is NULL");
    TensorPtr nb_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {7});
    expect_invalid(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nw.get(), nb_bad.get(), eps, w.get(), nullptr),
                   "norm_bias has shape [7], expected [8]");
    TensorPtr nw_i32 = tensor(b.get(), QWEN3VL_DTYPE_I32, {8});
    expect_invalid(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nw_i32.get(), nb.get(), eps, w.get(), nullptr),
                   "norm_weight must be f32 or f16 or bf16");
    expect_invalid(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nw.get(), nb.get(), -1.0f, w.get(), nullptr),
                   "eps must be finite and >= 0");
    TensorPtr w_badk = tensor(b.get(), QWEN3VL_DTYPE_BF16, {6, 9});
    expect_invalid(qwen3vl_op_layer_norm_linear(out.get(), x.get(), nw.get(), nb.get(), eps, w_badk.get(), nullptr),
                   "weight has shape [6, 9], expected [*, 8]");

    // mlp_gelu: K = 8, I = 12, N = 6.
    TensorPtr w1 = tensor(b.get(), QWEN3VL_DTYPE_BF16, {12, 8}), b1 = tensor(b.get(), QWEN3VL_DTYPE_BF16, {12});
    TensorPtr w2 = tensor(b.get(), QWEN3VL_DTYPE_F16, {6, 12}), b2 = tensor(b.get(), QWEN3VL_DTYPE_F32, {6});
    TensorPtr res = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 6});
    auto mlp = [&](qwen3vl_tensor* o, const qwen3vl_tensor* n_w, const qwen3vl_tensor* n_b, const qwen3vl_tensor* fc1,
                   const qwen3vl_tensor* fc1_b, int32_t t, const qwen3vl_tensor* fc2, const qwen3vl_tensor* fc2_b,
                   const qwen3vl_tensor* r) {
        return qwen3vl_op_mlp_gelu(o, x.get(), n_w, n_b, eps, fc1, fc1_b, t, fc2, fc2_b, r);
    };
    ASSERT_EQ(mlp(out.get(), nw.get(), nb.get(), w1.get(), b1.get(), 0, w2.get(), b2.get(), res.get()), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    ASSERT_EQ(mlp(out.get(), nullptr, nullptr, w1.get(), nullptr, 1, w2.get(), nullptr, nullptr), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    expect_invalid(mlp(out.get(), nw.get(), nullptr, w1.get(), b1.get(), 0, w2.get(), b2.get(), nullptr),
                   "qwen3vl_op_mlp_gelu: norm_weight and norm_bias must both be given or both be NULL");
    expect_invalid(mlp(out.get(), nullptr, nullptr, nullptr, b1.get(), 0, w2.get(), b2.get(), nullptr),
                   "qwen3vl_op_mlp_gelu: fc1_weight is NULL");
    TensorPtr w2_bad = tensor(b.get(), QWEN3VL_DTYPE_F16, {6, 13});
    expect_invalid(mlp(out.get(), nullptr, nullptr, w1.get(), b1.get(), 0, w2_bad.get(), b2.get(), nullptr),
                   "fc2_weight has shape [6, 13], expected [*, 12]");
    expect_invalid(mlp(out.get(), nullptr, nullptr, w1.get(), b2.get(), 0, w2.get(), b2.get(), nullptr),
                   "fc1_bias has shape [6], expected [12]");
    expect_invalid(mlp(out.get(), nullptr, nullptr, w1.get(), b1.get(), 0, w2.get(), b1.get(), nullptr),
                   "fc2_bias has shape [12], expected [6]");
    TensorPtr res_bad = tensor(b.get(), QWEN3VL_DTYPE_F32, {3, 5}), res_f16 = tensor(b.get(), QWEN3VL_DTYPE_F16, {3, 6});
    expect_invalid(mlp(out.get(), nullptr, nullptr, w1.get(), b1.get(), 0, w2.get(), b2.get(), res_bad.get()),
                   "residual has shape [3, 5], expected [3, 6]");
    expect_invalid(mlp(out.get(), nullptr, nullptr, w1.get(), b1.get(), 0, w2.get(), b2.get(), res_f16.get()),
                   "residual must be f32");
    expect_invalid(mlp(out.get(), nullptr, nullptr, w1.get(), b1.get(), -1, w2.get(), b2.get(), nullptr),
                   "tanh_approximation must be 0 or 1, got -1");
    // out may be x or the residual, not a shifted view of either, and must not overlap a weight.
    TensorPtr big = tensor(b.get(), QWEN3VL_DTYPE_F32, {40});
    TensorPtr r0 = view_of(big, 0, {3, 6}), r1 = view_of(big, 2, {3, 6});
    expect_invalid(mlp(r0.get(), nullptr, nullptr, w1.get(), b1.get(), 0, w2.get(), b2.get(), r1.get()),
                   "out partly overlaps residual");
    TensorPtr wbig = tensor(b.get(), QWEN3VL_DTYPE_F32, {6 * 12});
    TensorPtr w2_view = view_of(wbig, 0, {6, 12}), o_on_w2 = view_of(wbig, 10, {3, 6});
    expect_invalid(mlp(o_on_w2.get(), nullptr, nullptr, w1.get(), b1.get(), 0, w2_view.get(), b2.get(), nullptr),
                   "out overlaps fc2_weight");
    TensorPtr xbig = tensor(b.get(), QWEN3VL_DTYPE_F32, {40});
    TensorPtr xv = view_of(xbig, 0, {3, 8}), ov = view_of(xbig, 4, {3, 6});
    expect_invalid(qwen3vl_op_mlp_gelu(ov.get(), xv.get(), nullptr, nullptr, eps, w1.get(), nullptr, 0, w2.get(), nullptr,
                                       nullptr),
                   "out partly overlaps x");
}

}  // namespace
