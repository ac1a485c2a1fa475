#include "rope.h"

#include <cmath>
#include <vector>

#include "nn_common.h"
#include "norm.h"
#include "quant.h"

namespace qwen3vl {
namespace cpu {

void rope_inv_freq(float* inv_freq, int64_t dim, float theta) {
    for (int64_t i = 0; 2 * i < dim; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
        // theta ** e in f32: the double power rounded once is the correctly rounded f32 result.
        const float p = static_cast<float>(std::pow(static_cast<double>(theta), static_cast<double>(e)));
        inv_freq[i] = 1.0f / p;
    }
}

void mrope_angles(float* angles, const float* inv_freq, int64_t half, const int32_t pos_t, int32_t pos_h,
                  int32_t pos_w, const int64_t* section) {
    const float pt = static_cast<float>(pos_t), ph = static_cast<float>(pos_h), pw = static_cast<float>(pos_w);
    for (int64_t i = 0; i < half; ++i) {
        float p = pt;
        if (i % 3 == 1 && i < 3 * section[1]) p = ph;
        else if (i % 3 == 2 && i < 3 * section[2]) p = pw;
        angles[i] = p * inv_freq[i];
    }
}

void rotate_half_apply(float* x, const float* cos, const float* sin, int64_t half) {
    for (int64_t i = 0; i < half; ++i) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cos[i] - x2 * sin[i];
        x[i + half] = x2 * cos[i] + x1 * sin[i];
    }
}

// cos and sin of f32 angles via double, rounded once.
static void cos_sin(float* c, float* s, const float* angles, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        c[i] = static_cast<float>(std::cos(static_cast<double>(angles[i])));
        s[i] = static_cast<float>(std::sin(static_cast<double>(angles[i])));
    }
}

// Per-thread scratch that grows to the largest size asked and is kept: no allocation per call once warm.
static float* scratch(size_t n) {
    thread_local std::vector<float> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

void qk_norm_rope_kv(ThreadPool& pool, const QkNormRopeKv& a, CpuKernels k) {
    const int64_t D = a.head_dim, half = D / 2, T = a.tokens;
    const auto norm_row = k == CpuKernels::Avx2 ? rms_norm_row_avx2 : rms_norm_row_scalar;
    std::vector<float> inv_freq(static_cast<size_t>(half));
    rope_inv_freq(inv_freq.data(), D, a.theta);
    parallel_rows(pool, T, (a.q_heads + 3 * a.kv_heads) * D * 4, [&](int64_t b, int64_t e, int) {
        float* buf = scratch(static_cast<size_t>(3 * half));
        float *ang = buf, *c = buf + half, *s = buf + 2 * half;
        for (int64_t t = b; t < e; ++t) {
            mrope_angles(ang, inv_freq.data(), half, a.positions[t], a.positions[T + t], a.positions[2 * T + t],
                         a.section);
            cos_sin(c, s, ang, half);
            for (int64_t h = 0; h < a.q_heads; ++h) {
                float* row = a.q + (t * a.q_heads + h) * D;
                norm_row(row, row, a.q_norm, a.q_norm_dtype, D, a.eps);
                rotate_half_apply(row, c, s, half);
            }
            const int64_t slot = a.n_past + t;
            for (int64_t h = 0; h < a.kv_heads; ++h) {
                float* row = a.k + (t * a.kv_heads + h) * D;
                norm_row(row, row, a.k_norm, a.k_norm_dtype, D, a.eps);
                rotate_half_apply(row, c, s, half);
                const float* vrow = a.v + (t * a.kv_heads + h) * D;
                const size_t base = static_cast<size_t>((slot * a.kv_heads + h) * D);
                if (a.cache_dtype == QWEN3VL_DTYPE_Q8) {
                    quantize_kv_q8(row, D, static_cast<int8_t*>(a.k_cache) + base, a.k_cache_scales + base / kQ8Block);
                    quantize_kv_q8(vrow, D, static_cast<int8_t*>(a.v_cache) + base, a.v_cache_scales + base / kQ8Block);
                    continue;
                }
                for (int64_t d = 0; d < D; ++d) {
                    store_f32(a.k_cache, a.cache_dtype, base + static_cast<size_t>(d), row[d]);
                    store_f32(a.v_cache, a.cache_dtype, base + static_cast<size_t>(d), vrow[d]);
                }
            }
        }
    });
}

void rope_vision(ThreadPool& pool, float* qkv, int64_t tokens, int64_t heads, int64_t head_dim,
                 const int32_t* positions, float theta) {
    const int64_t half = head_dim / 2, quarter = head_dim / 4;
    std::vector<float> inv_freq(static_cast<size_t>(quarter));
    rope_inv_freq(inv_freq.data(), half, theta);
    parallel_rows(pool, tokens, 2 * heads * head_dim * 2, [&](int64_t b, int64_t e, int) {
        float* buf = scratch(static_cast<size_t>(3 * half));
        float *ang = buf, *c = buf + half, *s = buf + 2 * half;
        for (int64_t t = b; t < e; ++t) {
            const float row = static_cast<float>(positions[2 * t]), col = static_cast<float>(positions[2 * t + 1]);
            for (int64_t j = 0; j < quarter; ++j) {
                ang[j] = row * inv_freq[static_cast<size_t>(j)];
                ang[quarter + j] = col * inv_freq[static_cast<size_t>(j)];
            }
            cos_sin(c, s, ang, half);
            for (int64_t part = 0; part < 2; ++part)
                for (int64_t h = 0; h < heads; ++h)
                    rotate_half_apply(qkv + ((t * 3 + part) * heads + h) * head_dim, c, s, half);
        }
    });
}

}  // namespace cpu
}  // namespace qwen3vl
