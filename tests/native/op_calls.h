// Positional calls of the ops that take a *_params struct (qwen3vl.h, qwen3vl_testing.h), for the op suites and the
// CUDA benchmark: each fills the struct from its default and calls the op, so a test reads as the math it checks.
// n_past and n_past_bound keep their one meaning each (the bound only with n_past_tensor).
#pragma once

#include <cstdint>

#include "qwen3vl_testing.h"

namespace qwen3vl::testing::op {

inline qwen3vl_status norm_linear(qwen3vl_tensor* out0, const qwen3vl_tensor* weight0, qwen3vl_tensor* out1,
                                  const qwen3vl_tensor* weight1, qwen3vl_tensor* out2, const qwen3vl_tensor* weight2,
                                  const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight, float eps) {
    qwen3vl_norm_linear_params p = qwen3vl_norm_linear_default_params();
    p.out0 = out0;
    p.weight0 = weight0;
    p.out1 = out1;
    p.weight1 = weight1;
    p.out2 = out2;
    p.weight2 = weight2;
    p.x = x;
    p.norm_weight = norm_weight;
    p.eps = eps;
    return qwen3vl_op_norm_linear(&p);
}

inline qwen3vl_status layer_norm_linear(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight,
                                        const qwen3vl_tensor* norm_bias, float eps, const qwen3vl_tensor* weight,
                                        const qwen3vl_tensor* bias) {
    qwen3vl_layer_norm_linear_params p = qwen3vl_layer_norm_linear_default_params();
    p.out = out;
    p.x = x;
    p.norm_weight = norm_weight;
    p.norm_bias = norm_bias;
    p.eps = eps;
    p.weight = weight;
    p.bias = bias;
    return qwen3vl_op_layer_norm_linear(&p);
}

inline qwen3vl_status mlp_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight,
                               const qwen3vl_tensor* norm_bias, float eps, const qwen3vl_tensor* fc1_weight,
                               const qwen3vl_tensor* fc1_bias, int32_t tanh_approximation,
                               const qwen3vl_tensor* fc2_weight, const qwen3vl_tensor* fc2_bias,
                               const qwen3vl_tensor* residual) {
    qwen3vl_mlp_gelu_params p = qwen3vl_mlp_gelu_default_params();
    p.out = out;
    p.x = x;
    p.norm_weight = norm_weight;
    p.norm_bias = norm_bias;
    p.eps = eps;
    p.fc1_weight = fc1_weight;
    p.fc1_bias = fc1_bias;
    p.tanh_approximation = tanh_approximation;
    p.fc2_weight = fc2_weight;
    p.fc2_bias = fc2_bias;
    p.residual = residual;
    return qwen3vl_op_mlp_gelu(&p);
}

inline qwen3vl_qk_norm_rope_attention_params rope_attention_params(
    qwen3vl_tensor* out, qwen3vl_tensor* q, qwen3vl_tensor* k, const qwen3vl_tensor* v, const qwen3vl_tensor* q_norm,
    const qwen3vl_tensor* k_norm, float eps, const qwen3vl_tensor* positions, float theta, const int64_t* mrope_section,
    qwen3vl_tensor* k_cache, qwen3vl_tensor* v_cache, int64_t n_past, const qwen3vl_tensor* n_past_tensor,
    int64_t n_past_bound) {
    qwen3vl_qk_norm_rope_attention_params p = qwen3vl_qk_norm_rope_attention_default_params();
    p.out = out;
    p.q = q;
    p.k = k;
    p.v = v;
    p.q_norm = q_norm;
    p.k_norm = k_norm;
    p.eps = eps;
    p.positions = positions;
    p.theta = theta;
    for (int i = 0; i < 3; ++i) p.mrope_section[i] = mrope_section[i];
    p.k_cache = k_cache;
    p.v_cache = v_cache;
    p.n_past = n_past;
    p.n_past_tensor = n_past_tensor;
    p.n_past_bound = n_past_bound;
    return p;
}

inline qwen3vl_status qk_norm_rope_kv(qwen3vl_tensor* q, qwen3vl_tensor* k, const qwen3vl_tensor* v,
                                      const qwen3vl_tensor* q_norm, const qwen3vl_tensor* k_norm, float eps,
                                      const qwen3vl_tensor* positions, float theta, const int64_t* mrope_section,
                                      qwen3vl_tensor* k_cache, qwen3vl_tensor* v_cache, int64_t n_past,
                                      const qwen3vl_tensor* n_past_tensor = nullptr, int64_t n_past_bound = 0) {
    const qwen3vl_qk_norm_rope_attention_params p =
        rope_attention_params(nullptr, q, k, v, q_norm, k_norm, eps, positions, theta, mrope_section, k_cache, v_cache,
                              n_past, n_past_tensor, n_past_bound);
    return qwen3vl_op_qk_norm_rope_kv(&p);
}

inline qwen3vl_status qk_norm_rope_attention(qwen3vl_tensor* out, qwen3vl_tensor* q, qwen3vl_tensor* k,
                                             const qwen3vl_tensor* v, const qwen3vl_tensor* q_norm,
                                             const qwen3vl_tensor* k_norm, float eps, const qwen3vl_tensor* positions,
                                             float theta, const int64_t* mrope_section, qwen3vl_tensor* k_cache,
                                             qwen3vl_tensor* v_cache, int64_t n_past,
                                             const qwen3vl_tensor* n_past_tensor = nullptr, int64_t n_past_bound = 0) {
    const qwen3vl_qk_norm_rope_attention_params p =
        rope_attention_params(out, q, k, v, q_norm, k_norm, eps, positions, theta, mrope_section, k_cache, v_cache,
                              n_past, n_past_tensor, n_past_bound);
    return qwen3vl_op_qk_norm_rope_attention(&p);
}

inline qwen3vl_status attention(qwen3vl_tensor* out, const qwen3vl_tensor* q, const qwen3vl_tensor* k_cache,
                                const qwen3vl_tensor* v_cache, int64_t n_past, qwen3vl_attention_mask mask,
                                const qwen3vl_tensor* segments, const qwen3vl_tensor* n_past_tensor = nullptr,
                                int64_t n_past_bound = 0) {
    qwen3vl_attention_params p = qwen3vl_attention_default_params();
    p.out = out;
    p.q = q;
    p.k_cache = k_cache;
    p.v_cache = v_cache;
    p.n_past = n_past;
    p.mask = mask;
    p.segments = segments;
    p.n_past_tensor = n_past_tensor;
    p.n_past_bound = n_past_bound;
    return qwen3vl_op_attention(&p);
}

}  // namespace qwen3vl::testing::op
