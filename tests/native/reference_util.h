// Test helpers shared by the op suites: the f32 unit roundoff, Higham's gamma_n for error bounds, and the normalised
// mean squared error of a result against a double-precision reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
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

}  // namespace testing
}  // namespace qwen3vl
