// The test build's extra entry points (capi/qwen3vl_testing.h): the unfused pieces of the fused ops, used by the op
// suites as oracles. Compiled only into libqwen3vl_testing (native/CMakeLists.txt), never into the shipped library.
#include <cstdint>
#include <string>

#include "boundary.h"
#include "op_args.h"
#include "op_forms.h"
#include "qwen3vl_testing.h"

using namespace qwen3vl;

namespace {

// The elementwise ops over two inputs of one shape: out = op(a, b), out the same memory as either or separate.
template <class Op>
void binary(const char* op, qwen3vl_tensor* out, const qwen3vl_tensor* a, const char* a_name,
            const qwen3vl_tensor* b, const char* b_name, Op&& run) {
    OpArgs args(op);
    Tensor& o = args.f32(out, "out");
    const Tensor& ta = args.f32(a, a_name);
    const Tensor& tb = args.f32(b, b_name);
    args.same_shape(tb, b_name, ta, a_name);
    args.same_shape(o, "out", ta, a_name);
    args.in_place_or_disjoint(o, "out", ta, a_name);
    args.in_place_or_disjoint(o, "out", tb, b_name);
    args.run([&](Backend& be) {
        run(be, data_of<float>(o), data_of<float>(ta), data_of<float>(tb), static_cast<int64_t>(ta.elements()));
    });
}

}  // namespace

extern "C" {

qwen3vl_status qwen3vl_op_linear_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* gate,
                                        const qwen3vl_tensor* up) {
    return guarded([&] { swiglu_op("qwen3vl_op_linear_swiglu", out, x, nullptr, false, 0.0f, gate, up); });
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

qwen3vl_status qwen3vl_op_add(qwen3vl_tensor* out, const qwen3vl_tensor* a, const qwen3vl_tensor* b) {
    return guarded([&] {
        binary("qwen3vl_op_add", out, a, "a", b, "b",
               [](Backend& be, float* o, const float* x, const float* y, int64_t n) { be.add(o, x, y, n); });
    });
}

qwen3vl_status qwen3vl_op_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* gate, const qwen3vl_tensor* up) {
    return guarded([&] {
        binary("qwen3vl_op_swiglu", out, gate, "gate", up, "up",
               [](Backend& be, float* o, const float* g, const float* u, int64_t n) { be.swiglu(o, g, u, n); });
    });
}

qwen3vl_status qwen3vl_op_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, int32_t tanh_approximation) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_gelu");
        Tensor& o = args.f32(out, "out");
        const Tensor& tx = args.f32(x, "x");
        args.same_shape(o, "out", tx, "x");
        args.in_place_or_disjoint(o, "out", tx, "x");
        const bool tanh_form = args.flag(tanh_approximation, "tanh_approximation");
        args.run([&](Backend& be) {
            be.gelu(data_of<float>(o), data_of<float>(tx), static_cast<int64_t>(tx.elements()), tanh_form);
        });
    });
}

qwen3vl_status qwen3vl_op_add_rms_norm(qwen3vl_tensor* residual, qwen3vl_tensor* out, const qwen3vl_tensor* x,
                                       const qwen3vl_tensor* weight, float eps) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_add_rms_norm");
        Tensor& res = args.f32(residual, "residual");
        Tensor& o = args.f32(out, "out");
        const Tensor& tx = args.f32(x, "x");
        const Tensor& w = args.weight(weight, "weight");
        args.at_least_1d(res, "residual");
        args.same_shape(tx, "x", res, "residual");
        args.same_shape(o, "out", res, "residual");
        args.shape(w, "weight", {last_dim(res)});
        args.disjoint(o, "out", res, "residual");
        args.disjoint(tx, "x", res, "residual");
        args.in_place_or_disjoint(o, "out", tx, "x");
        args.eps(eps);
        args.run([&](Backend& be) {
            be.add_rms_norm(data_of<float>(res), data_of<float>(o), data_of<float>(tx), weight_of(w), rows_of(res),
                            last_dim(res), eps);
        });
    });
}

qwen3vl_status qwen3vl_op_softmax(qwen3vl_tensor* out, const qwen3vl_tensor* x) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_softmax");
        Tensor& o = args.f32(out, "out");
        const Tensor& tx = args.f32(x, "x");
        args.at_least_1d(tx, "x");
        args.same_shape(o, "out", tx, "x");
        args.in_place_or_disjoint(o, "out", tx, "x");
        args.run([&](Backend& be) { be.softmax(data_of<float>(o), data_of<float>(tx), rows_of(tx), last_dim(tx)); });
    });
}

qwen3vl_status qwen3vl_op_qk_norm_rope_kv(const qwen3vl_qk_norm_rope_attention_params* params) {
    return guarded([&] {
        require_struct(params, "qwen3vl_qk_norm_rope_attention_params");
        OpArgs args("qwen3vl_op_qk_norm_rope_kv");
        args.require(params->out == nullptr, "out must be NULL (this op writes the caches only)");
        const QkNormRopeKv a = rope_kv_args(args, *params);
        args.run([&](Backend& be) { be.qk_norm_rope_kv(a); });
    });
}

}  // extern "C"
