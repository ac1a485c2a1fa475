// C API entry points of the linear family: argument checks, then the CPU kernels of cpu/gemm.h or the CUDA ones of
// kernels/linear.cuh. The fused ops (norm_linear, norm_linear_swiglu, linear_residual, and the vision blocks'
// linear_gelu, layer_norm_linear, mlp_gelu) run on the CPU as the composition of the unfused kernels in the same
// order, so their results are bitwise those of the op sequence.
#include <cmath>
#include <string>
#include <vector>

#include "boundary.h"
#include "elementwise.h"
#include "gemm.h"
#include "linear.cuh"
#include "norm.h"
#include "op_args.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace {

bool overlaps(const Tensor& a, const Tensor& b) {
    const auto* a0 = static_cast<const uint8_t*>(a.data);
    const auto* b0 = static_cast<const uint8_t*>(b.data);
    return a.bytes > 0 && b.bytes > 0 && a0 < b0 + b.bytes && b0 < a0 + a.bytes;
}

// out must have x's leading dimensions and n as its last.
void check_out_shape(const OpArgs& args, const Tensor& out, const Tensor& x, int64_t n, const char* name = "out") {
    bool ok = out.ndim == x.ndim;
    for (int i = 0; ok && i + 1 < x.ndim; ++i) ok = out.shape[size_t(i)] == x.shape[size_t(i)];
    ok = ok && last_dim(out) == n;
    if (ok) return;
    std::string want, got;
    for (int i = 0; i + 1 < x.ndim; ++i) want += std::to_string(x.shape[size_t(i)]) + ", ";
    want += std::to_string(n);
    for (int i = 0; i < out.ndim; ++i) got += (i ? ", " : "") + std::to_string(out.shape[size_t(i)]);
    fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(args.op()) + ": " + name + " has shape [" + got +
                                              "], expected [" + want + "] (x's leading dimensions, N)");
}

void check_no_overlap(const OpArgs& args, const Tensor& out, const Tensor& in, const char* name,
                      const char* out_name = "out") {
    require(!overlaps(out, in), std::string(args.op()) + ": " + out_name + " overlaps " + name);
}

void require_eps(const OpArgs& args, float eps) {
    require(std::isfinite(eps) && eps >= 0.0f, std::string(args.op()) + ": eps must be finite and >= 0");
}

// out and in must be the same tensor (in place) or separate memory.
void check_same_or_disjoint(const OpArgs& args, const Tensor& out, const Tensor& in, const char* name) {
    require(!overlaps(out, in) || (out.data == in.data && out.bytes == in.bytes),
            std::string(args.op()) + ": out partly overlaps " + name +
                " (it may only be the same tensor or separate memory)");
}

const std::initializer_list<qwen3vl_dtype> kWeightDtypes = {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_BF16};

// The norm weight (or LayerNorm bias: name) [K] of a fused op, or NULL.
const Tensor* norm_weight_arg(OpArgs& args, const qwen3vl_tensor* t, int64_t K, const char* name = "norm_weight") {
    if (!t) return nullptr;
    const Tensor& w = args.tensor(t, name);
    args.dtype(w, name, kWeightDtypes);
    args.shape(w, name, {K});
    return &w;
}

// The optional bias [N] of a linear op, or NULL.
const Tensor* bias_arg(OpArgs& args, const qwen3vl_tensor* t, int64_t N, const char* name = "bias") {
    if (!t) return nullptr;
    const Tensor& b = args.tensor(t, name);
    args.dtype(b, name, kWeightDtypes);
    args.shape(b, name, {N});
    return &b;
}

// The arguments every single projection checks: out [..., N] (f32) = x [..., K] (f32) * weight [N, K]^T (+ bias [N]),
// out separate from x, weight and bias.
struct LinearArgs {
    Tensor& out;
    const Tensor& x;
    const Tensor& weight;
    const Tensor* bias;
    int64_t M, K, N;
};
LinearArgs linear_args(OpArgs& args, qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                       const qwen3vl_tensor* bias) {
    Tensor& o = args.tensor(out, "out");
    const Tensor& xt = args.tensor(x, "x");
    const Tensor& w = args.tensor(weight, "weight");
    args.dtype(o, "out", {QWEN3VL_DTYPE_F32});
    args.dtype(xt, "x", {QWEN3VL_DTYPE_F32});
    args.dtype(w, "weight", kWeightDtypes);
    const int64_t K = last_dim(xt);
    args.shape(w, "weight", {-1, K});
    const int64_t N = w.shape[0];
    const Tensor* b = bias_arg(args, bias, N);
    check_out_shape(args, o, xt, N);
    check_no_overlap(args, o, xt, "x");
    check_no_overlap(args, o, w, "weight");
    if (b) check_no_overlap(args, o, *b, "bias");
    return LinearArgs{o, xt, w, b, rows_of(xt), K, N};
}

cpu::WeightView view(const Tensor& t) { return cpu::WeightView{t.data, t.dtype}; }
// An optional weight (a bias): an empty view for NULL.
cpu::WeightView view(const Tensor* t) { return t ? view(*t) : cpu::WeightView{}; }
[[maybe_unused]] cuda::Weight device_view(const Tensor* t) { return t ? cuda::Weight{t->data, t->dtype} : cuda::Weight{}; }

// f32 scratch from the CPU backend's pool for the intermediate of a composed op (uninitialised, reused by later
// calls of the same size).
class HostScratch {
public:
    HostScratch(MemoryPool& pool, size_t floats)
        : pool_(pool), p_(floats ? pool.allocate(floats * sizeof(float)) : nullptr) {}
    ~HostScratch() {
        if (p_) pool_.deallocate(p_);
    }
    HostScratch(const HostScratch&) = delete;
    HostScratch& operator=(const HostScratch&) = delete;
    float* data() const { return static_cast<float*>(p_); }

private:
    MemoryPool& pool_;
    void* p_;
};

// y = rms_norm(x) * norm into scratch when there is a norm, else x itself (CPU).
const float* cpu_norm_input(CpuBackend& cpu, HostScratch& scratch, const float* x, const Tensor* norm, int64_t M,
                            int64_t K, float eps) {
    if (!norm) return x;
    cpu::rms_norm(cpu.threads(), scratch.data(), x, norm->data, norm->dtype, M, K, eps);
    return scratch.data();
}

// qwen3vl_op_linear_swiglu (no norm, no eps) and qwen3vl_op_norm_linear_swiglu (has_eps: eps is an argument and
// checked even when norm_weight is NULL): out = silu(y gate^T) * (y up^T), y = rms_norm(x) * norm_weight or x.
void swiglu_op(const char* op, qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight,
               bool has_eps, float eps, const qwen3vl_tensor* gate, const qwen3vl_tensor* up) {
    OpArgs args(op);
    Tensor& o = args.tensor(out, "out");
    const Tensor& xt = args.tensor(x, "x");
    const Tensor& g = args.tensor(gate, "gate");
    const Tensor& u = args.tensor(up, "up");
    args.dtype(o, "out", {QWEN3VL_DTYPE_F32});
    args.dtype(xt, "x", {QWEN3VL_DTYPE_F32});
    args.dtype(g, "gate", kWeightDtypes);
    args.dtype(u, "up", kWeightDtypes);
    const int64_t K = last_dim(xt);
    args.shape(g, "gate", {-1, K});
    const int64_t N = g.shape[0];
    args.shape(u, "up", {N, K});
    check_out_shape(args, o, xt, N);
    const Tensor* nw = norm_weight_arg(args, norm_weight, K);
    if (has_eps) require_eps(args, eps);
    check_no_overlap(args, o, xt, "x");
    check_no_overlap(args, o, g, "gate");
    check_no_overlap(args, o, u, "up");
    if (nw) check_no_overlap(args, o, *nw, "norm_weight");
    const int64_t M = rows_of(xt);
    if constexpr (kCudaCompiled)
        if (args.is_cuda())
            return cuda::norm_linear_swiglu(args.cuda(), static_cast<float*>(o.data),
                                            static_cast<const float*>(xt.data), M, K, N, device_view(nw), eps,
                                            device_view(&g), device_view(&u));
    CpuBackend& cpu = args.cpu();
    HostScratch y(cpu.pool(), nw ? size_t(M * K) : 0);
    const float* in = cpu_norm_input(cpu, y, static_cast<const float*>(xt.data), nw, M, K, eps);
    cpu::linear_swiglu(cpu.threads(), static_cast<float*>(o.data), in, M, K, N, view(g), view(u));
}

// ---- The vision ops (linear_gelu, layer_norm_linear, mlp_gelu): LayerNorm before and GELU after a projection.

bool tanh_flag(const OpArgs& args, int32_t tanh_approximation) {
    require(tanh_approximation == 0 || tanh_approximation == 1,
            std::string(args.op()) + ": tanh_approximation must be 0 or 1, got " + std::to_string(tanh_approximation));
    return tanh_approximation == 1;
}

// The LayerNorm of a fused op: weight and bias [K], both given or both NULL (then nullptr), K >= 1, eps checked.
struct LayerNormArgs {
    const Tensor* weight = nullptr;
    const Tensor* bias = nullptr;
};
LayerNormArgs layer_norm_args(OpArgs& args, const qwen3vl_tensor* weight, const qwen3vl_tensor* bias, int64_t K,
                              float eps) {
    require((weight == nullptr) == (bias == nullptr),
            std::string(args.op()) + ": norm_weight and norm_bias must both be given or both be NULL");
    require_eps(args, eps);
    if (!weight) return {};
    require(K >= 1, std::string(args.op()) + ": x must have a last dimension >= 1 (the LayerNorm's)");
    return {norm_weight_arg(args, weight, K), norm_weight_arg(args, bias, K, "norm_bias")};
}

// y = layer_norm(x) into scratch when there is a norm, else x (CPU).
const float* cpu_layer_norm_input(CpuBackend& cpu, HostScratch& scratch, const float* x, const LayerNormArgs& norm,
                                  int64_t M, int64_t K, float eps) {
    if (!norm.weight) return x;
    cpu::layer_norm(cpu.threads(), scratch.data(), x, norm.weight->data, norm.weight->dtype, norm.bias->data,
                    norm.bias->dtype, M, K, eps);
    return scratch.data();
}

}  // namespace
}  // namespace qwen3vl

using namespace qwen3vl;

qwen3vl_status qwen3vl_op_linear(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                 const qwen3vl_tensor* bias) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_linear");
        const LinearArgs a = linear_args(args, out, x, weight, bias);
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::linear(args.cuda(), static_cast<float*>(a.out.data), static_cast<const float*>(a.x.data),
                                    a.M, a.K, a.N, device_view(&a.weight), device_view(a.bias));
        CpuBackend& cpu = args.cpu();
        cpu::linear(cpu.threads(), static_cast<float*>(a.out.data), static_cast<const float*>(a.x.data), a.M, a.K, a.N,
                    view(a.weight), view(a.bias));
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
        require((out1 == nullptr) == (weight1 == nullptr),
                "qwen3vl_op_norm_linear: out1 and weight1 must both be given or both be NULL");
        require((out2 == nullptr) == (weight2 == nullptr),
                "qwen3vl_op_norm_linear: out2 and weight2 must both be given or both be NULL");
        require(out2 == nullptr || out1 != nullptr, "qwen3vl_op_norm_linear: out2/weight2 given without out1/weight1");
        const Tensor& xt = args.tensor(x, "x");
        args.dtype(xt, "x", {QWEN3VL_DTYPE_F32});
        const int64_t K = last_dim(xt);
        qwen3vl_tensor* const outs[3] = {out0, out1, out2};
        const qwen3vl_tensor* const weights[3] = {weight0, weight1, weight2};
        static const char* const out_names[3] = {"out0", "out1", "out2"};
        static const char* const weight_names[3] = {"weight0", "weight1", "weight2"};
        Tensor* o[3] = {};
        const Tensor* w[3] = {};
        int count = 0;
        for (; count < 3 && (count == 0 || outs[count] != nullptr); ++count) {
            o[count] = &args.tensor(outs[count], out_names[count]);
            w[count] = &args.tensor(weights[count], weight_names[count]);
            args.dtype(*o[count], out_names[count], {QWEN3VL_DTYPE_F32});
            args.dtype(*w[count], weight_names[count], kWeightDtypes);
            args.shape(*w[count], weight_names[count], {-1, K});
            check_out_shape(args, *o[count], xt, w[count]->shape[0], out_names[count]);
        }
        const Tensor* nw = norm_weight_arg(args, norm_weight, K);
        require_eps(args, eps);
        for (int i = 0; i < count; ++i) {
            check_no_overlap(args, *o[i], xt, "x", out_names[i]);
            for (int j = 0; j < count; ++j) {
                check_no_overlap(args, *o[i], *w[j], weight_names[j], out_names[i]);
                if (j > i) check_no_overlap(args, *o[i], *o[j], out_names[j], out_names[i]);
            }
            if (nw) check_no_overlap(args, *o[i], *nw, "norm_weight", out_names[i]);
        }
        const int64_t M = rows_of(xt);
        if constexpr (kCudaCompiled)
            if (args.is_cuda()) {
                cuda::Projection proj[3];
                for (int i = 0; i < count; ++i)
                    proj[i] = cuda::Projection{static_cast<float*>(o[i]->data), device_view(w[i]), w[i]->shape[0]};
                return cuda::norm_linear(args.cuda(), proj, count, static_cast<const float*>(xt.data), M, K,
                                         device_view(nw), eps);
            }
        CpuBackend& cpu = args.cpu();
        HostScratch y(cpu.pool(), nw ? size_t(M * K) : 0);
        const float* in = cpu_norm_input(cpu, y, static_cast<const float*>(xt.data), nw, M, K, eps);
        for (int i = 0; i < count; ++i)
            cpu::linear(cpu.threads(), static_cast<float*>(o[i]->data), in, M, K, w[i]->shape[0], view(*w[i]),
                        cpu::WeightView{});
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
        const Tensor& r = args.tensor(residual, "residual");
        args.dtype(r, "residual", {QWEN3VL_DTYPE_F32});
        check_out_shape(args, r, a.x, a.N, "residual");
        check_same_or_disjoint(args, a.out, r, "residual");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::linear_residual(args.cuda(), static_cast<float*>(a.out.data),
                                             static_cast<const float*>(a.x.data), a.M, a.K, a.N,
                                             device_view(&a.weight), device_view(a.bias),
                                             static_cast<const float*>(r.data));
        CpuBackend& cpu = args.cpu();
        HostScratch t(cpu.pool(), size_t(a.M * a.N));
        cpu::linear(cpu.threads(), t.data(), static_cast<const float*>(a.x.data), a.M, a.K, a.N, view(a.weight),
                    view(a.bias));
        cpu::add(cpu.threads(), static_cast<float*>(a.out.data), static_cast<const float*>(r.data), t.data(),
                 a.M * a.N);
    });
}

qwen3vl_status qwen3vl_op_linear_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                      const qwen3vl_tensor* bias, int32_t tanh_approximation) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_linear_gelu");
        const LinearArgs a = linear_args(args, out, x, weight, bias);
        const bool tanh_form = tanh_flag(args, tanh_approximation);
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::linear_gelu(args.cuda(), static_cast<float*>(a.out.data),
                                         static_cast<const float*>(a.x.data), a.M, a.K, a.N, device_view(&a.weight),
                                         device_view(a.bias), tanh_form);
        CpuBackend& cpu = args.cpu();
        float* y = static_cast<float*>(a.out.data);
        cpu::linear(cpu.threads(), y, static_cast<const float*>(a.x.data), a.M, a.K, a.N, view(a.weight),
                    view(a.bias));
        cpu::gelu(cpu.threads(), y, y, a.M * a.N, tanh_form);
    });
}

qwen3vl_status qwen3vl_op_layer_norm_linear(qwen3vl_tensor* out, const qwen3vl_tensor* x,
                                            const qwen3vl_tensor* norm_weight, const qwen3vl_tensor* norm_bias,
                                            float eps, const qwen3vl_tensor* weight, const qwen3vl_tensor* bias) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_layer_norm_linear");
        const LinearArgs a = linear_args(args, out, x, weight, bias);
        require(norm_weight != nullptr, "qwen3vl_op_layer_norm_linear: norm_weight is NULL");
        require(norm_bias != nullptr, "qwen3vl_op_layer_norm_linear: norm_bias is NULL");
        const LayerNormArgs norm = layer_norm_args(args, norm_weight, norm_bias, a.K, eps);
        check_no_overlap(args, a.out, *norm.weight, "norm_weight");
        check_no_overlap(args, a.out, *norm.bias, "norm_bias");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::layer_norm_linear(args.cuda(), static_cast<float*>(a.out.data),
                                               static_cast<const float*>(a.x.data), a.M, a.K, a.N,
                                               device_view(norm.weight), device_view(norm.bias), eps,
                                               device_view(&a.weight), device_view(a.bias));
        CpuBackend& cpu = args.cpu();
        HostScratch y(cpu.pool(), size_t(a.M * a.K));
        const float* in = cpu_layer_norm_input(cpu, y, static_cast<const float*>(a.x.data), norm, a.M, a.K, eps);
        cpu::linear(cpu.threads(), static_cast<float*>(a.out.data), in, a.M, a.K, a.N, view(a.weight),
                    view(a.bias));
    });
}

qwen3vl_status qwen3vl_op_mlp_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* norm_weight,
                                   const qwen3vl_tensor* norm_bias, float eps, const qwen3vl_tensor* fc1_weight,
                                   const qwen3vl_tensor* fc1_bias, int32_t tanh_approximation,
                                   const qwen3vl_tensor* fc2_weight, const qwen3vl_tensor* fc2_bias,
                                   const qwen3vl_tensor* residual) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_mlp_gelu");
        Tensor& o = args.tensor(out, "out");
        const Tensor& xt = args.tensor(x, "x");
        const Tensor& w1 = args.tensor(fc1_weight, "fc1_weight");
        const Tensor& w2 = args.tensor(fc2_weight, "fc2_weight");
        args.dtype(o, "out", {QWEN3VL_DTYPE_F32});
        args.dtype(xt, "x", {QWEN3VL_DTYPE_F32});
        args.dtype(w1, "fc1_weight", kWeightDtypes);
        args.dtype(w2, "fc2_weight", kWeightDtypes);
        const int64_t K = last_dim(xt);
        const LayerNormArgs norm = layer_norm_args(args, norm_weight, norm_bias, K, eps);
        args.shape(w1, "fc1_weight", {-1, K});
        const int64_t I = w1.shape[0];
        args.shape(w2, "fc2_weight", {-1, I});
        const int64_t N = w2.shape[0];
        const Tensor* b1 = bias_arg(args, fc1_bias, I, "fc1_bias");
        const Tensor* b2 = bias_arg(args, fc2_bias, N, "fc2_bias");
        check_out_shape(args, o, xt, N);
        const Tensor* r = nullptr;
        if (residual) {
            r = &args.tensor(residual, "residual");
            args.dtype(*r, "residual", {QWEN3VL_DTYPE_F32});
            check_out_shape(args, *r, xt, N, "residual");
        }
        const bool tanh_form = tanh_flag(args, tanh_approximation);
        check_same_or_disjoint(args, o, xt, "x");
        if (r) check_same_or_disjoint(args, o, *r, "residual");
        check_no_overlap(args, o, w1, "fc1_weight");
        check_no_overlap(args, o, w2, "fc2_weight");
        if (b1) check_no_overlap(args, o, *b1, "fc1_bias");
        if (b2) check_no_overlap(args, o, *b2, "fc2_bias");
        if (norm.weight) check_no_overlap(args, o, *norm.weight, "norm_weight");
        if (norm.bias) check_no_overlap(args, o, *norm.bias, "norm_bias");
        const int64_t M = rows_of(xt);
        const float* res = r ? static_cast<const float*>(r->data) : nullptr;
        if constexpr (kCudaCompiled)
            if (args.is_cuda()) {
                cuda::MlpGelu mlp;
                mlp.norm_weight = device_view(norm.weight);
                mlp.norm_bias = device_view(norm.bias);
                mlp.eps = eps;
                mlp.fc1 = device_view(&w1);
                mlp.fc1_bias = device_view(b1);
                mlp.tanh_approximation = tanh_form;
                mlp.fc2 = device_view(&w2);
                mlp.fc2_bias = device_view(b2);
                mlp.I = I;
                mlp.N = N;
                return cuda::mlp_gelu(args.cuda(), static_cast<float*>(o.data), static_cast<const float*>(xt.data), M,
                                      K, mlp, res);
            }
        CpuBackend& cpu = args.cpu();
        HostScratch y(cpu.pool(), norm.weight ? size_t(M * K) : 0);
        const float* in = cpu_layer_norm_input(cpu, y, static_cast<const float*>(xt.data), norm, M, K, eps);
        HostScratch h(cpu.pool(), size_t(M * I));
        cpu::linear(cpu.threads(), h.data(), in, M, K, I, view(w1), view(b1));
        cpu::gelu(cpu.threads(), h.data(), h.data(), M * I, tanh_form);
        // x is consumed: out (which may be x) is written only now.
        HostScratch t(cpu.pool(), res ? size_t(M * N) : 0);
        float* o2 = res ? t.data() : static_cast<float*>(o.data);
        cpu::linear(cpu.threads(), o2, h.data(), M, I, N, view(w2), view(b2));
        if (res) cpu::add(cpu.threads(), static_cast<float*>(o.data), res, o2, M * N);
    });
}
