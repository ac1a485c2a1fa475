// dtype conversions: the scalar conversions against formulas written independently here (exhaustive over all
// 16-bit inputs), rounding of f32 -> 16-bit checked as "nearest, ties to even", and the AVX2 kernels bit-equal
// to the scalar ones on fresh random inputs with special values and odd lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "convert.h"
#include "cpu_features.h"
#include "dtype.h"
#include "error.h"

namespace {

using namespace qwen3vl;

double f16_formula(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    const double sign = s ? -1.0 : 1.0;
    if (e == 31) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
    if (e == 0) return sign * std::ldexp(m, -24);
    return sign * std::ldexp(1024 + m, e - 25);
}

double bf16_formula(uint16_t h) {
    const int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    const double sign = s ? -1.0 : 1.0;
    if (e == 255) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
    if (e == 0) return sign * std::ldexp(m, -133);
    return sign * std::ldexp(128 + m, e - 134);
}

TEST(ConvertScalar, F16ToF32IsExactForAllInputs) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const double want = f16_formula(static_cast<uint16_t>(h));
        const float got = f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(want)) ASSERT_TRUE(std::isnan(got)) << h;
        else ASSERT_EQ(static_cast<double>(got), want) << h;
    }
}

TEST(ConvertScalar, Bf16ToF32IsExactForAllInputs) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const double want = bf16_formula(static_cast<uint16_t>(h));
        const float got = bf16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(want)) ASSERT_TRUE(std::isnan(got)) << h;
        else ASSERT_EQ(static_cast<double>(got), want) << h;
    }
}

// r is the correctly rounded 16-bit value of x when no neighbour is closer, and ties go to the even mantissa.
void expect_nearest_even(float x, uint16_t r, double (*value)(uint16_t)) {
    const double vx = x, vr = value(r);
    if (std::isnan(vx)) {
        EXPECT_TRUE(std::isnan(vr));
        return;
    }
    if (std::isinf(vr)) {
        // Overflow: only values at or beyond the rounding threshold may become infinite.
        const double max_finite = value(static_cast<uint16_t>((r & 0x8000) | ((r & 0x7fff) - 1)));
        EXPECT_GE(std::fabs(vx), std::fabs(max_finite)) << x;
        return;
    }
    const double err = std::fabs(vx - vr);
    for (int d : {-1, 1}) {
        const uint16_t n = static_cast<uint16_t>(r + d);
        if ((n & 0x7fff) == 0x7fff || ((n ^ r) & 0x8000)) continue;  // wrapped or changed sign
        const double vn = value(n);
        if (std::isnan(vn) || std::isinf(vn)) continue;
        const double errn = std::fabs(vx - vn);
        ASSERT_LE(err, errn) << "x=" << x << " r=" << r << " neighbour=" << n;
        if (err == errn) ASSERT_EQ(r & 1, 0) << "tie not to even: x=" << x;
    }
}

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
    std::vector<float> v(n);
    std::uniform_int_distribution<uint32_t> bits;
    std::normal_distribution<float> normal(0.f, 10.f);
    const float specials[] = {0.f, -0.f, INFINITY, -INFINITY, std::nanf(""), 65504.f, 65520.f, 65519.99f,
                              5.9604645e-8f, 2.9802322e-8f, 6.1035156e-5f, 3.0e38f, 1.0e-40f, -1.0e-45f};
    for (size_t i = 0; i < n; ++i) {
        const uint32_t kind = bits(rng) % 4;
        if (kind == 0) {
            uint32_t u = bits(rng);
            std::memcpy(&v[i], &u, 4);
        } else if (kind == 1) {
            v[i] = specials[bits(rng) % (sizeof(specials) / sizeof(float))];
        } else {
            v[i] = normal(rng);
        }
    }
    return v;
}

TEST(ConvertScalar, F32ToSixteenBitRoundsToNearestEven) {
    std::mt19937 rng(std::random_device{}());
    for (float x : random_floats(200000, rng)) {
        expect_nearest_even(x, f32_to_f16(x), f16_formula);
        expect_nearest_even(x, f32_to_bf16(x), bf16_formula);
    }
}

class ConvertAvx2 : public ::testing::Test {
protected:
    void SetUp() override {
        if (cpu_kernels() != CpuKernels::Avx2) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C (or QWEN3VL_CPU_KERNELS=scalar)";
    }
};

TEST_F(ConvertAvx2, MatchesScalarBitForBit) {
    std::mt19937 rng(std::random_device{}());
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(1000), size_t(4099)}) {
        const std::vector<float> src = random_floats(n, rng);
        std::vector<uint16_t> a(n, 0xdead), b(n, 0xbeef);
        cpu::f32_to_bf16_avx2(a.data(), src.data(), n);
        cpu::convert_scalar(b.data(), QWEN3VL_DTYPE_BF16, src.data(), QWEN3VL_DTYPE_F32, n);
        ASSERT_EQ(a, b) << "f32->bf16 n=" << n;
        cpu::f32_to_f16_avx2(a.data(), src.data(), n);
        cpu::convert_scalar(b.data(), QWEN3VL_DTYPE_F16, src.data(), QWEN3VL_DTYPE_F32, n);
        ASSERT_EQ(a, b) << "f32->f16 n=" << n;

        std::vector<float> fa(n, -1.f), fb(n, -2.f);
        cpu::bf16_to_f32_avx2(fa.data(), b.data(), n);  // b holds f16 bits now; reinterpret both ways
        cpu::convert_scalar(fb.data(), QWEN3VL_DTYPE_F32, b.data(), QWEN3VL_DTYPE_BF16, n);
        ASSERT_TRUE(n == 0 || std::memcmp(fa.data(), fb.data(), n * 4) == 0) << "bf16->f32 n=" << n;
        cpu::f16_to_f32_avx2(fa.data(), b.data(), n);
        cpu::convert_scalar(fb.data(), QWEN3VL_DTYPE_F32, b.data(), QWEN3VL_DTYPE_F16, n);
        ASSERT_TRUE(n == 0 || std::memcmp(fa.data(), fb.data(), n * 4) == 0) << "f16->f32 n=" << n;
    }
}

TEST(Convert, IntegerAndFloatDoNotMix) {
    float f = 1.f;
    int32_t i = 0;
    EXPECT_THROW(cpu::convert(&i, QWEN3VL_DTYPE_I32, &f, QWEN3VL_DTYPE_F32, 1), Error);
    cpu::convert(&i, QWEN3VL_DTYPE_I32, &i, QWEN3VL_DTYPE_I32, 1);
}

}  // namespace
