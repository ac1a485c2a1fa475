// C API entry points of the linear family: argument checks, then the CPU kernels of cpu/gemm.h or the CUDA ones of
// kernels/linear.cuh.
#include <string>
#include <vector>

#include "boundary.h"
#include "gemm.h"
#include "linear.cuh"
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
void check_out_shape(const OpArgs& args, const Tensor& out, const Tensor& x, int64_t n) {
    bool ok = out.ndim == x.ndim;
    for (int i = 0; ok && i + 1 < x.ndim; ++i) ok = out.shape[size_t(i)] == x.shape[size_t(i)];
    ok = ok && last_dim(out) == n;
    if (ok) return;
    std::string want, got;
    for (int i = 0; i + 1 < x.ndim; ++i) want += std::to_string(x.shape[size_t(i)]) + ", ";
    want += std::to_string(n);
    for (int i = 0; i < out.ndim; ++i) got += (i ? ", " : "") + std::to_string(out.shape[size_t(i)]);
    fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
         std::string(args.op()) + ": out has shape [" + got + "], expected [" + want + "] (x's leading dimensions, N)");
}

void check_no_overlap(const OpArgs& args, const Tensor& out, const Tensor& in, const char* name) {
    require(!overlaps(out, in), std::string(args.op()) + ": out overlaps " + name);
}

const std::initializer_list<qwen3vl_dtype> kWeightDtypes = {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_BF16};

cpu::WeightView view(const Tensor& t) { return cpu::WeightView{t.data, t.dtype}; }
[[maybe_unused]] cuda::Weight device_view(const Tensor* t) { return t ? cuda::Weight{t->data, t->dtype} : cuda::Weight{}; }

}  // namespace
}  // namespace qwen3vl

using namespace qwen3vl;

qwen3vl_status qwen3vl_op_linear(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                 const qwen3vl_tensor* bias) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_linear");
        Tensor& o = args.tensor(out, "out");
        const Tensor& xt = args.tensor(x, "x");
        const Tensor& w = args.tensor(weight, "weight");
        args.dtype(o, "out", {QWEN3VL_DTYPE_F32});
        args.dtype(xt, "x", {QWEN3VL_DTYPE_F32});
        args.dtype(w, "weight", kWeightDtypes);
        const int64_t K = last_dim(xt);
        args.shape(w, "weight", {-1, K});
        const int64_t N = w.shape[0];
        const Tensor* b = nullptr;
        if (bias) {
            b = &args.tensor(bias, "bias");
            args.dtype(*b, "bias", kWeightDtypes);
            args.shape(*b, "bias", {N});
        }
        check_out_shape(args, o, xt, N);
        check_no_overlap(args, o, xt, "x");
        check_no_overlap(args, o, w, "weight");
        if (b) check_no_overlap(args, o, *b, "bias");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::linear(args.cuda(), static_cast<float*>(o.data), static_cast<const float*>(xt.data),
                                    rows_of(xt), K, N, device_view(&w), device_view(b));
        CpuBackend& cpu = args.cpu();
        cpu::linear(cpu.threads(), static_cast<float*>(o.data), static_cast<const float*>(xt.data), rows_of(xt), K, N,
                    view(w), b ? view(*b) : cpu::WeightView{});
    });
}

qwen3vl_status qwen3vl_op_linear_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* gate,
                                        const qwen3vl_tensor* up) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_linear_swiglu");
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
        check_no_overlap(args, o, xt, "x");
        check_no_overlap(args, o, g, "gate");
        check_no_overlap(args, o, u, "up");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::linear_swiglu(args.cuda(), static_cast<float*>(o.data),
                                           static_cast<const float*>(xt.data), rows_of(xt), K, N, device_view(&g),
                                           device_view(&u));
        CpuBackend& cpu = args.cpu();
        cpu::linear_swiglu(cpu.threads(), static_cast<float*>(o.data), static_cast<const float*>(xt.data), rows_of(xt),
                           K, N, view(g), view(u));
    });
}
