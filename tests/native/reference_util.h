// Numerics shared by the op-family suites (tests/native/ops): the f32 unit roundoff, Higham's gamma_n for error
// bounds, the normalised mean squared error of a result against a reference, and the double-precision references of
// the ops whose results other families' tests build on (a fused op's reference is the chain of its parts): RMSNorm and
// LayerNorm (norm; in linear's fused norms and the rotary ops' per-head q/k norm), GELU and SwiGLU (elementwise; in
// linear's fused activations), the rotary steps and the q/k norm + M-RoPE (rope; in the fused attention op).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace qwen3vl {
namespace testing {

// u = 2^-24, the unit roundoff of f32.
constexpr double kU = 1.0 / (1 << 24);

// gamma(n) = n u / (1 - n u): the relative error bound of n f32 roundings (Higham, Accuracy and Stability of
// Numerical Algorithms, 3.1).
inline double gamma_n(double n) { return n * kU / (1.0 - n * kU); }

// sum (got - want)^2 / sum want^2 (the plain sum when want is all zero); infinite when got holds a NaN or an infinity
// (an unwritten, NaN-poisoned element fails every bound).
inline double nmse(const std::vector<float>& got, const std::vector<double>& want) {
    EXPECT_EQ(got.size(), want.size());
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
        if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
        err += (got[i] - want[i]) * (got[i] - want[i]);
        ref += want[i] * want[i];
    }
    return ref > 0 ? err / ref : err;
}

// The same against an f32 reference (one backend's result against another's).
inline double nmse(const std::vector<float>& got, const std::vector<float>& want) {
    return nmse(got, std::vector<double>(want.begin(), want.end()));
}

// ---- Double references with a bound on how far an f32 kernel may be from each value, built op by op from the
// input's bound (gamma as above; weights, norm weights and biases are the values the tensors really hold, so bf16 /
// f16 rounding is in the reference and every bound is an f32 one):
//  - rms_norm: the inverse RMS comes from a sum of K squares (gamma(K), any order), halved by the square root; the
//    division by K, eps add, square root and 1 / add 4u, the two products 2u: every y_k is within gamma(K + 6) |y_k|;
//  - layer_norm: the mean is off by at most em = gamma(K + 1) mean|x|, so x_k - mean by em + u |x_k - mean|; the
//    variance about the rounded mean is within gamma(K + 4) (its shift adds only em^2: sum (x - mean) = 0), rstd
//    within half that + 2u + em^2 / var, two products and the bias add 3u: |err_k| <= rstd |w_k| (em + (gamma(K +
//    12) + em^2 / var) |x_k - mean|) + 2u |y_k|;
//  - gelu: |gelu'| <= 1.129 (at x = sqrt 2, either form), and the f32 formula itself (constants rounded to f32,
//    erf / tanh within 2 ulp, 1 + erf or 1 + tanh, the products) is within ~5u |z|: 1.13 err + 10u |z|;
//  - swiglu silu(g) u: |silu'| <= 1.0998, and the f32 exp, division and product add a few ulp of the result.
struct Ref {
    std::vector<double> v, err;
};

inline Ref exact(const std::vector<float>& x) {
    return {std::vector<double>(x.begin(), x.end()), std::vector<double>(x.size(), 0.0)};
}

// x [M, K] normalised over each row of K, times w [K].
inline Ref rms_norm_ref(const std::vector<float>& x, const std::vector<float>& w, int64_t M, int64_t K, float eps) {
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

// (x - mean) / sqrt(var + eps) * w + b over each row of K.
inline Ref layer_norm_ref(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                          int64_t M, int64_t K, float eps) {
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

// gelu(z), the tanh approximation or the exact erf form.
inline Ref gelu_ref(const Ref& z, bool tanh_form) {
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

// silu(g) * u.
inline Ref swiglu_ref(const Ref& g, const Ref& u) {
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

// ---- Rotary. The f32 steps the contract fixes (transformers' inv_freq and angle roundings: at position 5000 an
// angle's f32 rounding is ~3e-4 rad, far above the f32 arithmetic); everything after them in double.
inline std::vector<float> inv_freq_f32(int64_t dim, float theta) {
    std::vector<float> f;
    for (int64_t i = 0; 2 * i < dim; ++i)
        f.push_back(1.0f / float(std::pow(double(theta), double(float(2 * i) / float(dim)))));
    return f;
}

// Rotate-half of the row x[off .. off + 2 half) by the angles ang[0 .. half).
inline void rotate_ref(std::vector<double>& x, size_t off, const std::vector<double>& ang, int64_t half) {
    for (int64_t i = 0; i < half; ++i) {
        const double a = x[off + i], b = x[off + i + half];
        x[off + i] = a * std::cos(ang[i]) - b * std::sin(ang[i]);
        x[off + i + half] = b * std::cos(ang[i]) + a * std::sin(ang[i]);
    }
}

// q or k of qk_norm_rope_kv: x [T, H, D] RMS-normalised per head row with w [D], then rotated by interleaved M-RoPE
// (native/cpu/rope.h): positions [3, T] are the t, h and w streams; slots start on the t stream, slots 1, 4, 7, ...
// below 3 section[1] take h, slots 2, 5, 8, ... below 3 section[2] take w (the reference doc's interleave rule).
inline std::vector<double> qk_norm_mrope_ref(const std::vector<float>& x, int64_t T, int64_t H, int64_t D,
                                             const std::vector<float>& w, float eps, const std::vector<int32_t>& pos,
                                             float theta, const int64_t section[3]) {
    std::vector<double> y = rms_norm_ref(x, w, T * H, D, eps).v;
    const int64_t half = D / 2;
    const std::vector<float> inv = inv_freq_f32(D, theta);
    for (int64_t t = 0; t < T; ++t) {
        std::vector<double> ang(static_cast<size_t>(half));
        for (int64_t i = 0; i < half; ++i) {
            int32_t p = pos[size_t(t)];
            if (i % 3 == 1 && i < 3 * section[1]) p = pos[size_t(T + t)];
            else if (i % 3 == 2 && i < 3 * section[2]) p = pos[size_t(2 * T + t)];
            ang[size_t(i)] = double(float(p) * inv[size_t(i)]);
        }
        for (int64_t h = 0; h < H; ++h) rotate_ref(y, size_t((t * H + h) * D), ang, half);
    }
    return y;
}

}  // namespace testing
}  // namespace qwen3vl
