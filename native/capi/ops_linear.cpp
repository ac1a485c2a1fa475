// C API entry points of the linear family: out = x * W^T (+ bias) and its fusions (norm_linear, norm_linear_swiglu,
// linear_residual, and the vision blocks' layer_norm_linear, mlp_gelu; linear_swiglu and linear_gelu are in the test
// build's ops_testing.cpp). Each checks its arguments (OpArgs) and runs the op on the tensors' backend (core/ops.h,
// LinearOps). Ops with more than six arguments take a *_params struct (qwen3vl.h).
#include <string>

#include "boundary.h"
#include "op_args.h"
#include "op_forms.h"
#include "qwen3vl.h"

using namespace qwen3vl;

namespace {

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

qwen3vl_norm_linear_params qwen3vl_norm_linear_default_params(void) {
    qwen3vl_norm_linear_params p{};
    p.struct_size = sizeof(p);
    p.eps = 1e-6f;
    return p;
}

qwen3vl_status qwen3vl_op_norm_linear(const qwen3vl_norm_linear_params* params) {
    return guarded([&] {
        require_struct(params, "qwen3vl_norm_linear_params");
        OpArgs args("qwen3vl_op_norm_linear");
        const qwen3vl_norm_linear_params& p = *params;
        args.require((p.out1 == nullptr) == (p.weight1 == nullptr), "out1 and weight1 must both be given or both be NULL");
        args.require((p.out2 == nullptr) == (p.weight2 == nullptr), "out2 and weight2 must both be given or both be NULL");
        args.require(p.out2 == nullptr || p.out1 != nullptr, "out2/weight2 given without out1/weight1");
        const Tensor& xt = args.f32(p.x, "x");
        const int64_t K = last_dim(xt);
        qwen3vl_tensor* const outs[3] = {p.out0, p.out1, p.out2};
        const qwen3vl_tensor* const weights[3] = {p.weight0, p.weight1, p.weight2};
        static const char* const out_names[3] = {"out0", "out1", "out2"};
        static const char* const weight_names[3] = {"weight0", "weight1", "weight2"};
        Tensor* o[3] = {};
        const Tensor* w[3] = {};
        int count = 0;
        for (; count < 3 && (count == 0 || outs[count] != nullptr); ++count) {
            o[count] = &args.f32(outs[count], out_names[count]);
            w[count] = &args.matrix(weights[count], weight_names[count]);
            args.shape(*w[count], weight_names[count], {-1, K});
            args.projected_shape(*o[count], out_names[count], xt, w[count]->shape[0]);
        }
        const Tensor* nw = args.optional_vector(p.norm_weight, "norm_weight", K);
        args.eps(p.eps);
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
        args.run([&](Backend& be) { be.norm_linear(proj, count, data_of<float>(xt), rows_of(xt), K, weight_of(nw), p.eps); });
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

qwen3vl_layer_norm_linear_params qwen3vl_layer_norm_linear_default_params(void) {
    qwen3vl_layer_norm_linear_params p{};
    p.struct_size = sizeof(p);
    p.eps = 1e-6f;
    return p;
}

qwen3vl_status qwen3vl_op_layer_norm_linear(const qwen3vl_layer_norm_linear_params* params) {
    return guarded([&] {
        require_struct(params, "qwen3vl_layer_norm_linear_params");
        OpArgs args("qwen3vl_op_layer_norm_linear");
        const qwen3vl_layer_norm_linear_params& p = *params;
        const LinearArgs a = linear_args(args, p.out, p.x, p.weight, p.bias);
        args.require(p.norm_weight != nullptr, "norm_weight is NULL");
        args.require(p.norm_bias != nullptr, "norm_bias is NULL");
        const LayerNormArgs norm = layer_norm_args(args, p.norm_weight, p.norm_bias, a.K, p.eps);
        args.disjoint(a.out, "out", *norm.weight, "norm_weight");
        args.disjoint(a.out, "out", *norm.bias, "norm_bias");
        args.run([&](Backend& be) {
            be.layer_norm_linear(data_of<float>(a.out), data_of<float>(a.x), a.M, a.K, a.N, weight_of(norm.weight),
                                 weight_of(norm.bias), p.eps, weight_of(a.weight), weight_of(a.bias));
        });
    });
}

qwen3vl_mlp_gelu_params qwen3vl_mlp_gelu_default_params(void) {
    qwen3vl_mlp_gelu_params p{};
    p.struct_size = sizeof(p);
    p.eps = 1e-6f;
    p.tanh_approximation = 1;
    return p;
}

qwen3vl_status qwen3vl_op_mlp_gelu(const qwen3vl_mlp_gelu_params* params) {
    return guarded([&] {
        require_struct(params, "qwen3vl_mlp_gelu_params");
        OpArgs args("qwen3vl_op_mlp_gelu");
        const qwen3vl_mlp_gelu_params& p = *params;
        args.require(p.reserved == 0, "reserved must be 0");
        Tensor& o = args.f32(p.out, "out");
        const Tensor& xt = args.f32(p.x, "x");
        const Tensor& w1 = args.matrix(p.fc1_weight, "fc1_weight");
        const Tensor& w2 = args.matrix(p.fc2_weight, "fc2_weight");
        const int64_t K = last_dim(xt);
        const LayerNormArgs norm = layer_norm_args(args, p.norm_weight, p.norm_bias, K, p.eps);
        args.shape(w1, "fc1_weight", {-1, K});
        const int64_t I = w1.shape[0];
        args.shape(w2, "fc2_weight", {-1, I});
        const int64_t N = w2.shape[0];
        const Tensor* b1 = args.optional_vector(p.fc1_bias, "fc1_bias", I);
        const Tensor* b2 = args.optional_vector(p.fc2_bias, "fc2_bias", N);
        args.projected_shape(o, "out", xt, N);
        const Tensor* r = nullptr;
        if (p.residual) {
            r = &args.f32(p.residual, "residual");
            args.projected_shape(*r, "residual", xt, N);
        }
        const bool tanh_form = args.flag(p.tanh_approximation, "tanh_approximation");
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
        mlp.eps = p.eps;
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
