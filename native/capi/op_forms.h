// Argument forms shared by several op entry points (capi/ops_*.cpp and the test build's capi/ops_testing.cpp): a
// checked projection, the gated-MLP form, n_past with its device-side bound, and the text attention's prologue.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "op_args.h"
#include "op_params.h"
#include "qwen3vl.h"

namespace qwen3vl {

// The checked arguments of a single projection: out [..., N] (f32) = x [..., K] (f32) * weight [N, K]^T (+ bias
// [N]), out separate from x, weight and bias.
struct LinearArgs {
    Tensor& out;
    const Tensor& x;
    const Tensor& weight;
    const Tensor* bias;
    int64_t M, K, N;
};
inline LinearArgs linear_args(OpArgs& args, qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                              const qwen3vl_tensor* bias) {
    Tensor& o = args.f32(out, "out");
    const Tensor& xt = args.f32(x, "x");
    const Tensor& w = args.matrix(weight, "weight");
    const int64_t K = last_dim(xt);
    args.shape(w, "weight", {-1, K});
    const int64_t N = w.shape[0];
    const Tensor* b = args.optional_vector(bias, "bias", N);
    args.projected_shape(o, "out", xt, N);
    args.disjoint(o, "out", xt, "x");
    args.disjoint(o, "out", w, "weight");
    if (b) args.disjoint(o, "out", *b, "bias");
    return LinearArgs{o, xt, w, b, rows_of(xt), K, N};
}

// qwen3vl_op_linear_swiglu (no norm, no eps) and qwen3vl_op_norm_linear_swiglu (has_eps: eps is an argument and
// checked even when norm_weight is NULL): out = silu(y gate^T) * (y up^T), y = rms_norm(x) * norm_weight or x.
inline void swiglu_op(const char* op, qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight,
                      bool has_eps, float eps, const qwen3vl_tensor* gate, const qwen3vl_tensor* up) {
    OpArgs args(op);
    Tensor& o = args.f32(out, "out");
    const Tensor& xt = args.f32(x, "x");
    const Tensor& g = args.matrix(gate, "gate");
    const Tensor& u = args.matrix(up, "up");
    const int64_t K = last_dim(xt);
    args.shape(g, "gate", {-1, K});
    const int64_t N = g.shape[0];
    args.shape(u, "up", {N, K});
    args.projected_shape(o, "out", xt, N);
    const Tensor* nw = args.optional_vector(norm_weight, "norm_weight", K);
    if (has_eps) args.eps(eps);
    args.disjoint(o, "out", xt, "x");
    args.disjoint(o, "out", g, "gate");
    args.disjoint(o, "out", u, "up");
    if (nw) args.disjoint(o, "out", *nw, "norm_weight");
    args.run([&](Backend& be) {
        be.norm_linear_swiglu(data_of<float>(o), data_of<float>(xt), rows_of(xt), K, N, weight_of(nw), eps,
                              weight_of(g), weight_of(u));
    });
}

// n_past of the attention ops as the backends take it: the value n_past, or with the i32 [1] n_past_tensor, its
// memory and the bound of the value the op reads from it when it runs (n_past_bound; 0: the whole cache, max_value).
// Each field has one meaning: n_past is 0 with the tensor, n_past_bound 0 without it.
struct NPast {
    int64_t value;
    const int32_t* tensor;
};
inline NPast n_past_of(OpArgs& args, int64_t n_past, int64_t n_past_bound, const qwen3vl_tensor* n_past_tensor,
                       int64_t max_value, int64_t T) {
    if (n_past_tensor == nullptr) {
        args.require(n_past_bound == 0, "n_past_bound " + std::to_string(n_past_bound) +
                                            " is given without n_past_tensor (it bounds the tensor's value; use n_past)");
        return {n_past, nullptr};
    }
    args.require(n_past == 0, "n_past " + std::to_string(n_past) +
                                  " is given with n_past_tensor (the op reads n_past from the tensor; its bound is "
                                  "n_past_bound)");
    const Tensor& t = args.i32(n_past_tensor, "n_past_tensor");
    args.shape(t, "n_past_tensor", {1});
    const int64_t bound = n_past_bound == 0 ? max_value : n_past_bound;
    args.require(bound >= 0 && bound <= max_value, "n_past_bound " + std::to_string(bound) + " + " +
                                                       std::to_string(T) + " tokens exceed the cache");
    return {bound, data_of<int32_t>(t)};
}

// CAUSAL attention of q [T, Hq, D] (f32) into out [T, Hq, D] over caches [capacity, Hkv, D] of dtype kv_dtype, after
// n_past keys (the bound of n_past_tensor, when set).
inline AttentionArgs causal_args(float* out, const float* q, const Tensor& k_cache, const Tensor& v_cache, int64_t T,
                                 int64_t Hq, int64_t Hkv, int64_t D, NPast n_past) {
    AttentionArgs a{};
    a.out = out;
    a.q = q;
    a.q_stride = Hq * D;
    a.k = k_cache.data;
    a.v = v_cache.data;
    a.kv_dtype = k_cache.dtype;
    if (k_cache.dtype == QWEN3VL_DTYPE_Q8) {
        a.k_scales = static_cast<const uint16_t*>(k_cache.scales);
        a.v_scales = static_cast<const uint16_t*>(v_cache.scales);
    }
    a.kv_stride = Hkv * D;
    a.tokens = T;
    a.q_heads = Hq;
    a.kv_heads = Hkv;
    a.head_dim = D;
    a.causal = true;
    a.n_past = n_past.value;
    a.n_past_device = n_past.tensor;
    return a;
}

// The text attention's prologue (qwen3vl_op_qk_norm_rope_attention, and its cache-writing half alone in the test
// build), checked, as the backends' parameters. p's struct_size is checked by the caller.
inline QkNormRopeKv rope_kv_args(OpArgs& args, const qwen3vl_qk_norm_rope_attention_params& p) {
    args.require(p.reserved == 0, "reserved must be 0");
    Tensor& tq = args.f32(p.q, "q");
    Tensor& tk = args.f32(p.k, "k");
    const Tensor& tv = args.f32(p.v, "v");
    const Tensor& qn = args.weight(p.q_norm, "q_norm");
    const Tensor& kn = args.weight(p.k_norm, "k_norm");
    const Tensor& pos = args.i32(p.positions, "positions");
    Tensor& kc = args.cache(p.k_cache, "k_cache");
    Tensor& vc = args.tensor(p.v_cache, "v_cache");
    args.dtype(vc, "v_cache", {kc.dtype});
    args.shape(tq, "q", {-1, -1, -1});
    const int64_t T = tq.shape[0], Hq = tq.shape[1], D = tq.shape[2];
    args.shape(tk, "k", {T, -1, D});
    const int64_t Hkv = tk.shape[1];
    args.shape(tv, "v", {T, Hkv, D});
    args.shape(qn, "q_norm", {D});
    args.shape(kn, "k_norm", {D});
    args.shape(pos, "positions", {3, T});
    args.shape(kc, "k_cache", {-1, Hkv, D});
    args.shape(vc, "v_cache", {kc.shape[0], Hkv, D});
    args.require(D % 2 == 0, "head_dim " + std::to_string(D) + " must be even");
    args.eps(p.eps);
    args.require(std::isfinite(p.theta) && p.theta > 0.0f, "theta must be finite and > 0");
    for (int i = 0; i < 3; ++i)
        args.require(p.mrope_section[i] >= 0, "mrope_section[" + std::to_string(i) + "] is negative");
    const NPast np = n_past_of(args, p.n_past, p.n_past_bound, p.n_past_tensor, kc.shape[0] - T, T);
    args.require(np.value >= 0 && np.value <= kc.shape[0] - T,
                 "n_past " + std::to_string(np.value) + " + " + std::to_string(T) + " tokens does not fit the cache's " +
                     std::to_string(kc.shape[0]) + " rows");
    const Tensor* all[] = {&tq, &tk, &tv, &kc, &vc};
    const char* names[] = {"q", "k", "v", "k_cache", "v_cache"};
    for (int i = 0; i < 5; ++i)
        for (int j = i + 1; j < 5; ++j) args.disjoint(*all[i], names[i], *all[j], names[j]);
    QkNormRopeKv a{data_of<float>(tq), data_of<float>(tk), data_of<float>(tv), T, Hq, Hkv, D, qn.data, qn.dtype,
                   kn.data, kn.dtype, p.eps, data_of<int32_t>(pos), p.theta,
                   {p.mrope_section[0], p.mrope_section[1], p.mrope_section[2]}, kc.data, vc.data, kc.dtype, np.value};
    a.n_past_device = np.tensor;
    if (kc.dtype == QWEN3VL_DTYPE_Q8) {
        a.k_cache_scales = static_cast<uint16_t*>(kc.scales);
        a.v_cache_scales = static_cast<uint16_t*>(vc.scales);
    }
    return a;
}

}  // namespace qwen3vl
