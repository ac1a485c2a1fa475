// C API entry points of the linear family: out = x * W^T (+ bias) and its fusions (norm_linear, norm_linear_swiglu,
// linear_residual, and the vision blocks' linear_gelu, layer_norm_linear, mlp_gelu). Each checks its arguments
// (OpArgs) and runs the op on the tensors' backend (core/ops.h, LinearOps).
#include <string>

#include "boundary.h"
#include "op_args.h"
#include "qwen3vl.h"

using namespace qwen3vl;

namespace {

// The checked arguments of a single projection: out [..., N] (f32) = x [..., K] (f32) * weight [N, K]^T (+ bias
// [N]), out separate from x, weight and bias.
struct LinearArgs {
    Tensor& out;
    const Tensor& x;
    const Tensor& weight;
    const Tensor* bias;
    int64_t M, K, N;
};
LinearArgs linear_args(OpArgs& args, qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                       const qwen3vl_tensor* bias) {
    Tensor& o = args.f32(out, "out");
    const Tensor& xt = args.f32(x, "x");
    const Tensor& w = args.weight(weight, "weight");
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
void swiglu_op(const char* op, qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight,
               bool has_eps, float eps, const qwen3vl_tensor* gate, const qwen3vl_tensor* up) {
    OpArgs args(op);
    Tensor& o = args.f32(out, "out");
    const Tensor& xt = args.f32(x, "x");
    const Tensor& g = args.weight(gate, "gate");
    const Tensor& u = args.weight(up, "up");
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

// The LayerNorm of a fused vision op: weight and bias [K], both given or both NULL (then absent), K >= 1, eps checked.
struct LayerNormArgs {
    const Tensor* weight = nullptr;
    const Tensor* bias = nullptr;
};
LayerNormArgs layer_norm_args(OpArgs& args, const qwen3vl_tensor* weight, const qwen3vl_tensor* bias, int64_t K,
                              float eps) {
    args.require((weight == nullptr) == (bias == nullptr), "norm_weight and norm_bias must both be given or both be NULL");
    args.eps(eps);
    if (!weight) return {};
    args.require(K >= 1, "x must have a last dimension >= 1 (the LayerNorm's)");
    return {args.optional_vector(weight, "norm_weight", K), args.optional_vector(bias, "norm_bias", K)};
}

}  // namespace

extern "C" {

qwen3vl_status qwen3vl_op_linear(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                 const qwen3vl_tensor* bias) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_linear");
        const LinearArgs a = linear_args(args, out, x, weight, bias);
        args.run([&](Backend& be) {
            be.linear(data_of<float>(a.out), data_of<float>(a.x), a.M, a.K, a.N, weight_of(a.weight),
                      weight_of(a.bias));
        });
    });
}

qwen3vl_status qwen3vl_op_linear_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* gate,
                                        const qwen3vl_tensor* up) {
    return guarded([&] { swiglu_op("qwen3vl_op_linear_swiglu", out, x, nullptr, false, 0.0f, gate, up); });
}

qwen3vl_status qwen3vl_op_norm_linear(qwen3vl_tensor* out0, const qwen3vl_tensor* weight0, qwen3vl_tensor* out1,
                                      const qwen3vl_tensor* weight1, qwen3vl_tensor* out2,
                                      const qwen3vl_tensor* weight2, const qwen3vl_tensor* x,
                                      const qwen3vl_tensor* norm_weight, float eps) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_norm_linear");
        args.require((out1 == nullptr) == (weight1 == nullptr), "out1 and weight1 must both be given or both be NULL");
        args.require((out2 == nullptr) == (weight2 == nullptr), "out2 and weight2 must both be given or both be NULL");
        args.require(out2 == nullptr || out1 != nullptr, "out2/weight2 given without out1/weight1");
        const Tensor& xt = args.f32(x, "x");
        const int64_t K = last_dim(xt);
        qwen3vl_tensor* const outs[3] = {out0, out1, out2};
        const qwen3vl_tensor* const weights[3] = {weight0, weight1, weight2};
        static const char* const out_names[3] = {"out0", "out1", "out2"};
        static const char* const weight_names[3] = {"weight0", "weight1", "weight2"};
        Tensor* o[3] = {};
        const Tensor* w[3] = {};
        int count = 0;
        for (; count < 3 && (count == 0 || outs[count] != nullptr); ++count) {
            o[count] = &args.f32(outs[count], out_names[count]);
            w[count] = &args.weight(weights[count], weight_names[count]);
            args.shape(*w[count], weight_names[count], {-1, K});
            args.projected_shape(*o[count], out_names[count], xt, w[count]->shape[0]);
        }
        const Tensor* nw = args.optional_vector(norm_weight, "norm_weight", K);
        args.eps(eps);
        for (int i = 0; i < count; ++i) {
            args.disjoint(*o[i], out_names[i], xt, "x");
            for (int j = 0; j < count; ++j) {
                args.disjoint(*o[i], out_names[i], *w[j], weight_names[j]);
                if (j > i) args.disjoint(*o[i], out_names[i], *o[j], out_names[j]);
            }
            if (nw) args.disjoint(*o[i], out_names[i], *nw, "norm_weight");
        }
        Projection proj[3];
        for (int i = 0; i < count; ++i) proj[i] = Projection{data_of<float>(*o[i]), weight_of(w[i]), w[i]->shape[0]};
        args.run([&](Backend& be) { be.norm_linear(proj, count, data_of<float>(xt), rows_of(xt), K, weight_of(nw), eps); });
    });
}

qwen3vl_status qwen3vl_op_norm_linear_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* x,
                                             const qwen3vl_tensor* norm_weight, float eps, const qwen3vl_tensor* gate,
                                             const qwen3vl_tensor* up) {
    return guarded([&] { swiglu_op("qwen3vl_op_norm_linear_swiglu", out, x, norm_weight, true, eps, gate, up); });
}

qwen3vl_status qwen3vl_op_linear_residual(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                          const qwen3vl_tensor* bias, const qwen3vl_tensor* residual) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_linear_residual");
        const LinearArgs a = linear_args(args, out, x, weight, bias);
        const Tensor& r = args.f32(residual, "residual");
        args.projected_shape(r, "residual", a.x, a.N);
        args.in_place_or_disjoint(a.out, "out", r, "residual");
        args.run([&](Backend& be) {
            be.linear_residual(data_of<float>(a.out), data_of<float>(a.x), a.M, a.K, a.N, weight_of(a.weight),
                               weight_of(a.bias), data_of<float>(r));
        });
    });
}

qwen3vl_status qwen3vl_op_linear_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                      const qwen3vl_tensor* bias, int32_t tanh_approximation) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_linear_gelu");
        const LinearArgs a = linear_args(args, out, x, weight, bias);
        const bool tanh_form = args.flag(tanh_approximation, "tanh_approximation");
        args.run([&](Backend& be) {
            be.linear_gelu(data_of<float>(a.out), data_of<float>(a.x), a.M, a.K, a.N, weight_of(a.weight),
                           weight_of(a.bias), tanh_form);
        });
    });
}

qwen3vl_status qwen3vl_op_layer_norm_linear(qwen3vl_tensor* out, const qwen3vl_tensor* x,
                                            const qwen3vl_tensor* norm_weight, const qwen3vl_tensor* norm_bias,
                                            float eps, const qwen3vl_tensor* weight, const qwen3vl_tensor* bias) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_layer_norm_linear");
        const LinearArgs a = linear_args(args, out, x, weight, bias);
        args.require(norm_weight != nullptr, "norm_weight is NULL");
        args.require(norm_bias != nullptr, "norm_bias is NULL");
        const LayerNormArgs norm = layer_norm_args(args, norm_weight, norm_bias, a.K, eps);
        args.disjoint(a.out, "out", *norm.weight, "norm_weight");
        args.disjoint(a.out, "out", *norm.bias, "norm_bias");
        args.run([&](Backend& be) {
            be.layer_norm_linear(data_of<float>(a.out), data_of<float>(a.x), a.M, a.K, a.N, weight_of(norm.weight),
                                 weight_of(norm.bias), eps, weight_of(a.weight), weight_of(a.bias));
        });
    });
}

qwen3vl_status qwen3vl_op_mlp_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight,
                                   const qwen3vl_tensor* norm_bias, float eps, const qwen3vl_tensor* fc1_weight,
                                   const qwen3vl_tensor* fc1_bias, int32_t tanh_approximation,
                                   const qwen3vl_tensor* fc2_weight, const qwen3vl_tensor* fc2_bias,
                                   const qwen3vl_tensor* residual) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_mlp_gelu");
        Tensor& o = args.f32(out, "out");
        const Tensor& xt = args.f32(x, "x");
        const Tensor& w1 = args.weight(fc1_weight, "fc1_weight");
        const Tensor& w2 = args.weight(fc2_weight, "fc2_weight");
        const int64_t K = last_dim(xt);
        const LayerNormArgs norm = layer_norm_args(args, norm_weight, norm_bias, K, eps);
        args.shape(w1, "fc1_weight", {-1, K});
        const int64_t I = w1.shape[0];
        args.shape(w2, "fc2_weight", {-1, I});
        const int64_t N = w2.shape[0];
        const Tensor* b1 = args.optional_vector(fc1_bias, "fc1_bias", I);
        const Tensor* b2 = args.optional_vector(fc2_bias, "fc2_bias", N);
        args.projected_shape(o, "out", xt, N);
        const Tensor* r = nullptr;
        if (residual) {
            r = &args.f32(residual, "residual");
            args.projected_shape(*r, "residual", xt, N);
        }
        const bool tanh_form = args.flag(tanh_approximation, "tanh_approximation");
        args.in_place_or_disjoint(o, "out", xt, "x");
        if (r) args.in_place_or_disjoint(o, "out", *r, "residual");
        args.disjoint(o, "out", w1, "fc1_weight");
        args.disjoint(o, "out", w2, "fc2_weight");
        if (b1) args.disjoint(o, "out", *b1, "fc1_bias");
        if (b2) args.disjoint(o, "out", *b2, "fc2_bias");
        if (norm.weight) args.disjoint(o, "out", *norm.weight, "norm_weight");
        if (norm.bias) args.disjoint(o, "out", *norm.bias, "norm_bias");
        MlpGelu mlp;
        mlp.norm_weight = weight_of(norm.weight);
        mlp.norm_bias = weight_of(norm.bias);
        mlp.eps = eps;
        mlp.fc1 = weight_of(w1);
        mlp.fc1_bias = weight_of(b1);
        mlp.tanh_approximation = tanh_form;
        mlp.fc2 = weight_of(w2);
        mlp.fc2_bias = weight_of(b2);
        mlp.I = I;
        mlp.N = N;
        args.run([&](Backend& be) {
            be.mlp_gelu(data_of<float>(o), data_of<float>(xt), rows_of(xt), K, mlp, r ? data_of<float>(*r) : nullptr);
        });
    });
}

}  // extern "C"
