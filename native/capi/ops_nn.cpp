// C API entry points of the norm, activation, rotary, attention, embedding and reduction ops (qwen3vl.h, "Ops").
// Each checks its arguments completely (OpArgs: presence, backend, dtype, shape; then ranges and aliasing) before
// running the kernel of its backend: native/cpu/ or, for tensors on a CUDA backend, native/kernels/.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "attention.cuh"
#include "attention.h"
#include "boundary.h"
#include "elementwise.cuh"
#include "elementwise.h"
#include "embedding.cuh"
#include "embedding.h"
#include "norm.cuh"
#include "norm.h"
#include "op_args.h"
#include "qwen3vl.h"
#include "reduce.cuh"
#include "reduce.h"
#include "rope.cuh"
#include "rope.h"
#include "segments.cuh"
#include "topk.cuh"

using namespace qwen3vl;

namespace {

constexpr std::initializer_list<qwen3vl_dtype> kWeightDtypes = {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16,
                                                                  QWEN3VL_DTYPE_BF16};

std::string shape_text(const Tensor& t) {
    std::string s = "[";
    for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[static_cast<size_t>(i)]);
    return s + "]";
}

const Tensor& f32(OpArgs& args, const qwen3vl_tensor* h, const char* name) {
    const Tensor& t = args.tensor(h, name);
    args.dtype(t, name, {QWEN3VL_DTYPE_F32});
    return t;
}
Tensor& f32(OpArgs& args, qwen3vl_tensor* h, const char* name) {
    return const_cast<Tensor&>(f32(args, static_cast<const qwen3vl_tensor*>(h), name));
}

const Tensor& weight(OpArgs& args, const qwen3vl_tensor* h, const char* name) {
    const Tensor& t = args.tensor(h, name);
    args.dtype(t, name, kWeightDtypes);
    return t;
}

const Tensor& i32(OpArgs& args, const qwen3vl_tensor* h, const char* name) {
    const Tensor& t = args.tensor(h, name);
    args.dtype(t, name, {QWEN3VL_DTYPE_I32});
    return t;
}

void same_shape(const OpArgs& args, const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) {
    bool ok = t.ndim == ref.ndim;
    for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[static_cast<size_t>(i)] == ref.shape[static_cast<size_t>(i)];
    require(ok, std::string(args.op()) + ": " + name + " has shape " + shape_text(t) + ", expected " +
                    shape_text(ref) + " (the shape of " + ref_name + ")");
}

bool overlap(const Tensor& a, const Tensor& b) {
    const auto* a0 = static_cast<const char*>(a.data);
    const auto* b0 = static_cast<const char*>(b.data);
    return a0 < b0 + b.bytes && b0 < a0 + a.bytes && a.bytes > 0 && b.bytes > 0;
}

// out and in must be the same memory (in place) or not overlap at all.
void in_place_or_disjoint(const OpArgs& args, const Tensor& out, const char* out_name, const Tensor& in,
                          const char* in_name) {
    require(!overlap(out, in) || (out.data == in.data && out.bytes == in.bytes),
            std::string(args.op()) + ": " + out_name + " partly overlaps " + in_name +
                " (it may only be the same tensor or separate memory)");
}

void disjoint(const OpArgs& args, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
    require(!overlap(a, b), std::string(args.op()) + ": " + a_name + " overlaps " + b_name + " (they must not share memory)");
}

void require_eps(const OpArgs& args, float eps) {
    require(std::isfinite(eps) && eps >= 0.0f, std::string(args.op()) + ": eps must be finite and >= 0");
}

void require_at_least_1d(const OpArgs& args, const Tensor& t, const char* name) {
    require(t.ndim >= 1 && last_dim(t) >= 1, std::string(args.op()) + ": " + name + " must have a last dimension >= 1");
}

template <class T>
const T* host(const Tensor& t) {
    return static_cast<const T*>(t.data);
}
template <class T>
T* host_mut(Tensor& t) {
    return static_cast<T*>(t.data);
}

// The i32 values of a tensor, readable on the host for argument checks: its own memory on the CPU, a copy (which
// waits for the backend's pending work) on a device.
const int32_t* host_i32(const Tensor& t, std::vector<int32_t>& copy) {
    if (t.backend->type() == QWEN3VL_BACKEND_CPU) return host<int32_t>(t);
    copy.resize(static_cast<size_t>(t.elements()));
    t.backend->download(copy.data(), QWEN3VL_DTYPE_I32, t.data, QWEN3VL_DTYPE_I32, copy.size());
    return copy.data();
}

// n_past of the attention ops: the argument, or the i32 [1] n_past_tensor, whose value may reach the argument (the
// bound; 0: the whole cache, max_value). On the CPU the tensor's value is read and checked against the bound; on a GPU
// the kernels read it when they run, so `value` becomes the bound, which sizes the launch (a tighter bound, a
// smaller launch), and `device` points at the tensor.
struct NPast {
    int64_t value;
    const int32_t* device;
};
NPast n_past_of(OpArgs& args, int64_t n_past, const qwen3vl_tensor* n_past_tensor, int64_t max_value, int64_t T) {
    if (n_past_tensor == nullptr) return {n_past, nullptr};
    const Tensor& t = i32(args, n_past_tensor, "n_past_tensor");
    args.shape(t, "n_past_tensor", {1});
    const int64_t bound = n_past == 0 ? max_value : n_past;
    if (bound < 0 || bound > max_value)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(args.op()) + ": n_past " + std::to_string(n_past) +
                                                  " (the bound of n_past_tensor) + " + std::to_string(T) +
                                                  " tokens exceed the cache");
    if (t.backend->type() == QWEN3VL_BACKEND_CPU) {
        const int64_t v = *host<int32_t>(t);
        if (v < 0 || v > bound)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(args.op()) + ": n_past_tensor holds " +
                                                      std::to_string(v) + ", outside 0 .. " + std::to_string(bound));
        return {v, nullptr};
    }
    return {bound, host<int32_t>(t)};
}

// CAUSAL attention of q [T, Hq, D] (f32) into out [T, Hq, D] over caches [capacity, Hkv, D] of dtype kv_dtype, after
// n_past keys (on a GPU the bound of n_past_device, when set).
AttentionArgs causal_args(float* out, const float* q, const void* k_cache, const void* v_cache, qwen3vl_dtype kv_dtype,
                          int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int64_t n_past,
                          const int32_t* n_past_device) {
    AttentionArgs a{};
    a.out = out;
    a.q = q;
    a.q_stride = Hq * D;
    a.k = k_cache;
    a.v = v_cache;
    a.kv_dtype = kv_dtype;
    a.kv_stride = Hkv * D;
    a.tokens = T;
    a.q_heads = Hq;
    a.kv_heads = Hkv;
    a.head_dim = D;
    a.causal = true;
    a.n_past = n_past;
    a.n_past_device = n_past_device;
    return a;
}

// The arguments of qwen3vl_op_qk_norm_rope_kv, checked (also for the fused qwen3vl_op_qk_norm_rope_attention), as
// the op's parameters; on a GPU with n_past read from n_past_tensor on the device and the device error flag.
QkNormRopeKv rope_kv_args(OpArgs& args, qwen3vl_tensor* q, qwen3vl_tensor* k, const qwen3vl_tensor* v,
                          const qwen3vl_tensor* q_norm, const qwen3vl_tensor* k_norm, float eps,
                          const qwen3vl_tensor* positions, float theta, const int64_t* mrope_section,
                          qwen3vl_tensor* k_cache, qwen3vl_tensor* v_cache, int64_t n_past,
                          const qwen3vl_tensor* n_past_tensor) {
    Tensor& tq = f32(args, q, "q");
    Tensor& tk = f32(args, k, "k");
    const Tensor& tv = f32(args, v, "v");
    const Tensor& qn = weight(args, q_norm, "q_norm");
    const Tensor& kn = weight(args, k_norm, "k_norm");
    const Tensor& pos = i32(args, positions, "positions");
    Tensor& kc = args.tensor(k_cache, "k_cache");
    Tensor& vc = args.tensor(v_cache, "v_cache");
    args.dtype(kc, "k_cache", kWeightDtypes);
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
    require(D % 2 == 0, std::string(args.op()) + ": head_dim " + std::to_string(D) + " must be even");
    require_eps(args, eps);
    require(std::isfinite(theta) && theta > 0.0f, std::string(args.op()) + ": theta must be finite and > 0");
    require(mrope_section != nullptr, std::string(args.op()) + ": mrope_section is NULL");
    for (int i = 0; i < 3; ++i)
        require(mrope_section[i] >= 0, std::string(args.op()) + ": mrope_section[" + std::to_string(i) +
                                           "] is negative");
    const NPast np = n_past_of(args, n_past, n_past_tensor, kc.shape[0] - T, T);
    n_past = np.value;
    require(n_past >= 0 && n_past <= kc.shape[0] - T,
            std::string(args.op()) + ": n_past " + std::to_string(n_past) + " + " + std::to_string(T) +
                " tokens does not fit the cache's " + std::to_string(kc.shape[0]) + " rows");
    const Tensor* all[] = {&tq, &tk, &tv, &kc, &vc};
    const char* names[] = {"q", "k", "v", "k_cache", "v_cache"};
    for (int i = 0; i < 5; ++i)
        for (int j = i + 1; j < 5; ++j) disjoint(args, *all[i], names[i], *all[j], names[j]);
    QkNormRopeKv a{host_mut<float>(tq), host_mut<float>(tk), host<float>(tv), T, Hq, Hkv, D, qn.data,
                         qn.dtype, kn.data, kn.dtype, eps, host<int32_t>(pos), theta,
                         {mrope_section[0], mrope_section[1], mrope_section[2]}, kc.data, vc.data, kc.dtype,
                         n_past};
    if constexpr (kCudaCompiled)
        if (args.is_cuda()) {
            a.n_past_device = np.device;
            a.error_flag = args.cuda().device_error_flag();
        }
    return a;
}

}  // namespace

extern "C" {


qwen3vl_status qwen3vl_op_add(qwen3vl_tensor* out, const qwen3vl_tensor* a, const qwen3vl_tensor* b) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_add");
        Tensor& o = f32(args, out, "out");
        const Tensor& ta = f32(args, a, "a");
        const Tensor& tb = f32(args, b, "b");
        same_shape(args, tb, "b", ta, "a");
        same_shape(args, o, "out", ta, "a");
        in_place_or_disjoint(args, o, "out", ta, "a");
        in_place_or_disjoint(args, o, "out", tb, "b");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::add(args.cuda(), host_mut<float>(o), host<float>(ta), host<float>(tb),
                                 static_cast<int64_t>(ta.elements()));
        cpu::add(args.cpu().threads(), host_mut<float>(o), host<float>(ta), host<float>(tb),
                 static_cast<int64_t>(ta.elements()));
    });
}

qwen3vl_status qwen3vl_op_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* gate, const qwen3vl_tensor* up) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_swiglu");
        Tensor& o = f32(args, out, "out");
        const Tensor& g = f32(args, gate, "gate");
        const Tensor& u = f32(args, up, "up");
        same_shape(args, u, "up", g, "gate");
        same_shape(args, o, "out", g, "gate");
        in_place_or_disjoint(args, o, "out", g, "gate");
        in_place_or_disjoint(args, o, "out", u, "up");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::swiglu(args.cuda(), host_mut<float>(o), host<float>(g), host<float>(u),
                                    static_cast<int64_t>(g.elements()));
        cpu::swiglu(args.cpu().threads(), host_mut<float>(o), host<float>(g), host<float>(u),
                    static_cast<int64_t>(g.elements()));
    });
}

qwen3vl_status qwen3vl_op_gelu(qwen3vl_tensor* out, const qwen3vl_tensor* x, int32_t tanh_approximation) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_gelu");
        Tensor& o = f32(args, out, "out");
        const Tensor& tx = f32(args, x, "x");
        same_shape(args, o, "out", tx, "x");
        in_place_or_disjoint(args, o, "out", tx, "x");
        require(tanh_approximation == 0 || tanh_approximation == 1,
                "qwen3vl_op_gelu: tanh_approximation must be 0 or 1, got " + std::to_string(tanh_approximation));
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::gelu(args.cuda(), host_mut<float>(o), host<float>(tx), static_cast<int64_t>(tx.elements()),
                                  tanh_approximation == 1);
        cpu::gelu(args.cpu().threads(), host_mut<float>(o), host<float>(tx), static_cast<int64_t>(tx.elements()),
                  tanh_approximation == 1);
    });
}

qwen3vl_status qwen3vl_op_rms_norm(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight_,
                                               float eps) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_rms_norm");
        Tensor& o = f32(args, out, "out");
        const Tensor& tx = f32(args, x, "x");
        const Tensor& w = weight(args, weight_, "weight");
        require_at_least_1d(args, tx, "x");
        same_shape(args, o, "out", tx, "x");
        args.shape(w, "weight", {last_dim(tx)});
        in_place_or_disjoint(args, o, "out", tx, "x");
        require_eps(args, eps);
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::rms_norm(args.cuda(), host_mut<float>(o), host<float>(tx), w.data, w.dtype, rows_of(tx),
                                      last_dim(tx), eps);
        cpu::rms_norm(args.cpu().threads(), host_mut<float>(o), host<float>(tx), w.data, w.dtype, rows_of(tx),
                      last_dim(tx), eps);
    });
}

qwen3vl_status qwen3vl_op_add_rms_norm(qwen3vl_tensor* residual, qwen3vl_tensor* out, const qwen3vl_tensor* x,
                                                   const qwen3vl_tensor* weight_, float eps) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_add_rms_norm");
        Tensor& res = f32(args, residual, "residual");
        Tensor& o = f32(args, out, "out");
        const Tensor& tx = f32(args, x, "x");
        const Tensor& w = weight(args, weight_, "weight");
        require_at_least_1d(args, res, "residual");
        same_shape(args, tx, "x", res, "residual");
        same_shape(args, o, "out", res, "residual");
        args.shape(w, "weight", {last_dim(res)});
        disjoint(args, o, "out", res, "residual");
        disjoint(args, tx, "x", res, "residual");
        in_place_or_disjoint(args, o, "out", tx, "x");
        require_eps(args, eps);
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::add_rms_norm(args.cuda(), host_mut<float>(res), host_mut<float>(o), host<float>(tx),
                                          w.data, w.dtype, rows_of(res), last_dim(res), eps);
        cpu::add_rms_norm(args.cpu().threads(), host_mut<float>(res), host_mut<float>(o), host<float>(tx), w.data,
                          w.dtype, rows_of(res), last_dim(res), eps);
    });
}

qwen3vl_status qwen3vl_op_layer_norm(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight_,
                                                 const qwen3vl_tensor* bias, float eps) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_layer_norm");
        Tensor& o = f32(args, out, "out");
        const Tensor& tx = f32(args, x, "x");
        const Tensor& w = weight(args, weight_, "weight");
        const Tensor& b = weight(args, bias, "bias");
        require_at_least_1d(args, tx, "x");
        same_shape(args, o, "out", tx, "x");
        args.shape(w, "weight", {last_dim(tx)});
        args.shape(b, "bias", {last_dim(tx)});
        in_place_or_disjoint(args, o, "out", tx, "x");
        require_eps(args, eps);
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::layer_norm(args.cuda(), host_mut<float>(o), host<float>(tx), w.data, w.dtype, b.data,
                                        b.dtype, rows_of(tx), last_dim(tx), eps);
        cpu::layer_norm(args.cpu().threads(), host_mut<float>(o), host<float>(tx), w.data, w.dtype, b.data, b.dtype,
                        rows_of(tx), last_dim(tx), eps);
    });
}

qwen3vl_status qwen3vl_op_softmax(qwen3vl_tensor* out, const qwen3vl_tensor* x) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_softmax");
        Tensor& o = f32(args, out, "out");
        const Tensor& tx = f32(args, x, "x");
        require_at_least_1d(args, tx, "x");
        same_shape(args, o, "out", tx, "x");
        in_place_or_disjoint(args, o, "out", tx, "x");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::softmax(args.cuda(), host_mut<float>(o), host<float>(tx), rows_of(tx), last_dim(tx));
        cpu::softmax(args.cpu().threads(), host_mut<float>(o), host<float>(tx), rows_of(tx), last_dim(tx));
    });
}

qwen3vl_status qwen3vl_op_argmax(qwen3vl_tensor* out, const qwen3vl_tensor* x) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_argmax");
        Tensor& o = args.tensor(out, "out");
        args.dtype(o, "out", {QWEN3VL_DTYPE_I32});
        const Tensor& tx = f32(args, x, "x");
        require_at_least_1d(args, tx, "x");
        require(last_dim(tx) <= INT32_MAX, "qwen3vl_op_argmax: the last dimension of x exceeds the i32 range");
        args.shape(o, "out", {rows_of(tx)});
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::argmax(args.cuda(), host_mut<int32_t>(o), host<float>(tx), rows_of(tx), last_dim(tx));
        cpu::argmax(args.cpu().threads(), host_mut<int32_t>(o), host<float>(tx), rows_of(tx), last_dim(tx));
    });
}

qwen3vl_status qwen3vl_op_top_k(qwen3vl_tensor* values, qwen3vl_tensor* indices, const qwen3vl_tensor* x, int64_t k) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_top_k");
        Tensor& tv = f32(args, values, "values");
        Tensor& ti = args.tensor(indices, "indices");
        args.dtype(ti, "indices", {QWEN3VL_DTYPE_I32});
        const Tensor& tx = f32(args, x, "x");
        require_at_least_1d(args, tx, "x");
        const int64_t n = last_dim(tx);
        require(n <= INT32_MAX, "qwen3vl_op_top_k: the last dimension of x exceeds the i32 range");
        require(k >= 1 && k <= QWEN3VL_TOP_K_MAX && k <= n,
                "qwen3vl_op_top_k: k = " + std::to_string(k) + " must be in 1 .. min(" + std::to_string(n) +
                    " (the last dimension of x), QWEN3VL_TOP_K_MAX = " + std::to_string(QWEN3VL_TOP_K_MAX) + ")");
        Tensor want = tx;  // x's shape with the last dimension k
        want.shape[static_cast<size_t>(tx.ndim - 1)] = k;
        same_shape(args, tv, "values", want, "x with the last dimension k");
        same_shape(args, ti, "indices", want, "x with the last dimension k");
        require(!overlap(tv, ti) && !overlap(tv, tx) && !overlap(ti, tx),
                "qwen3vl_op_top_k: values, indices and x must not share memory");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::top_k(args.cuda(), host_mut<float>(tv), host_mut<int32_t>(ti), host<float>(tx),
                                   rows_of(tx), n, k);
        cpu::top_k(args.cpu().threads(), host_mut<float>(tv), host_mut<int32_t>(ti), host<float>(tx), rows_of(tx), n,
                   k);
    });
}

qwen3vl_status qwen3vl_op_embedding(qwen3vl_tensor* out, const qwen3vl_tensor* table, const qwen3vl_tensor* ids) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_embedding");
        Tensor& o = f32(args, out, "out");
        const Tensor& tab = weight(args, table, "table");
        const Tensor& ti = i32(args, ids, "ids");
        args.shape(tab, "table", {-1, -1});
        args.shape(ti, "ids", {-1});
        args.shape(o, "out", {ti.shape[0], tab.shape[1]});
        // On a GPU the kernel checks the ids (cuda::embedding): a host check would wait for them and could not be
        // captured in a graph.
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::embedding(args.cuda(), host_mut<float>(o), tab.data, tab.dtype, tab.shape[0],
                                       host<int32_t>(ti), ti.shape[0], tab.shape[1]);
        CpuBackend& be = args.cpu();
        const int32_t* id = host<int32_t>(ti);
        for (int64_t t = 0; t < ti.shape[0]; ++t)
            require(id[t] >= 0 && id[t] < tab.shape[0], "qwen3vl_op_embedding: ids[" + std::to_string(t) + "] = " +
                                                            std::to_string(id[t]) + " is outside the table's " +
                                                            std::to_string(tab.shape[0]) + " rows");
        cpu::embedding(be.threads(), host_mut<float>(o), tab.data, tab.dtype, id, ti.shape[0], tab.shape[1]);
    });
}

qwen3vl_status qwen3vl_op_scatter_rows(qwen3vl_tensor* x, const qwen3vl_tensor* rows, const qwen3vl_tensor* src,
                                                   int32_t accumulate) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_scatter_rows");
        Tensor& tx = f32(args, x, "x");
        const Tensor& tr = i32(args, rows, "rows");
        const Tensor& ts = f32(args, src, "src");
        args.shape(tx, "x", {-1, -1});
        args.shape(tr, "rows", {-1});
        args.shape(ts, "src", {tr.shape[0], tx.shape[1]});
        disjoint(args, ts, "src", tx, "x");
        require(accumulate == 0 || accumulate == 1,
                "qwen3vl_op_scatter_rows: accumulate must be 0 or 1, got " + std::to_string(accumulate));
        std::vector<int32_t> staged;
        const int32_t* r = host_i32(tr, staged);
        std::vector<bool> seen(static_cast<size_t>(tx.shape[0]), false);
        for (int64_t i = 0; i < tr.shape[0]; ++i) {
            require(r[i] >= 0 && r[i] < tx.shape[0], "qwen3vl_op_scatter_rows: rows[" + std::to_string(i) + "] = " +
                                                         std::to_string(r[i]) + " is outside x's " +
                                                         std::to_string(tx.shape[0]) + " rows");
            require(!seen[static_cast<size_t>(r[i])], "qwen3vl_op_scatter_rows: rows[" + std::to_string(i) + "] = " +
                                                          std::to_string(r[i]) + " repeats an earlier row");
            seen[static_cast<size_t>(r[i])] = true;
        }
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::scatter_rows(args.cuda(), host_mut<float>(tx), host<int32_t>(tr), host<float>(ts),
                                          tr.shape[0], tx.shape[1], accumulate == 1);
        CpuBackend& be = args.cpu();
        cpu::scatter_rows(be.threads(), host_mut<float>(tx), r, host<float>(ts), tr.shape[0], tx.shape[1],
                          accumulate == 1);
    });
}

qwen3vl_status qwen3vl_op_qk_norm_rope_kv(qwen3vl_tensor* q, qwen3vl_tensor* k, const qwen3vl_tensor* v,
                                          const qwen3vl_tensor* q_norm, const qwen3vl_tensor* k_norm, float eps,
                                          const qwen3vl_tensor* positions, float theta, const int64_t* mrope_section,
                                          qwen3vl_tensor* k_cache, qwen3vl_tensor* v_cache, int64_t n_past,
                                          const qwen3vl_tensor* n_past_tensor) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_qk_norm_rope_kv");
        const QkNormRopeKv a = rope_kv_args(args, q, k, v, q_norm, k_norm, eps, positions, theta, mrope_section,
                                            k_cache, v_cache, n_past, n_past_tensor);
        if constexpr (kCudaCompiled)
            if (args.is_cuda()) return cuda::qk_norm_rope_kv(args.cuda(), a);
        cpu::qk_norm_rope_kv(args.cpu().threads(), a);
    });
}

qwen3vl_status qwen3vl_op_qk_norm_rope_attention(qwen3vl_tensor* out, qwen3vl_tensor* q, qwen3vl_tensor* k,
                                                 const qwen3vl_tensor* v, const qwen3vl_tensor* q_norm,
                                                 const qwen3vl_tensor* k_norm, float eps,
                                                 const qwen3vl_tensor* positions, float theta,
                                                 const int64_t* mrope_section, qwen3vl_tensor* k_cache,
                                                 qwen3vl_tensor* v_cache, int64_t n_past,
                                                 const qwen3vl_tensor* n_past_tensor) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_qk_norm_rope_attention");
        Tensor& o = f32(args, out, "out");
        const QkNormRopeKv r = rope_kv_args(args, q, k, v, q_norm, k_norm, eps, positions, theta, mrope_section,
                                            k_cache, v_cache, n_past, n_past_tensor);
        args.shape(o, "out", {r.tokens, r.q_heads, r.head_dim});
        require(r.kv_heads >= 1 && r.q_heads % r.kv_heads == 0,
                "qwen3vl_op_qk_norm_rope_attention: q has " + std::to_string(r.q_heads) +
                    " heads, not a multiple of k's " + std::to_string(r.kv_heads));
        const qwen3vl_tensor* inputs[] = {q, k, v, k_cache, v_cache};
        const char* names[] = {"q", "k", "v", "k_cache", "v_cache"};
        for (int i = 0; i < 5; ++i) disjoint(args, o, "out", args.tensor(inputs[i], names[i]), names[i]);
        const AttentionArgs a = causal_args(host_mut<float>(o), r.q, r.k_cache, r.v_cache, r.cache_dtype, r.tokens,
                                            r.q_heads, r.kv_heads, r.head_dim, r.n_past, r.n_past_device);
        if constexpr (kCudaCompiled)
            if (args.is_cuda()) return cuda::qk_norm_rope_attention(args.cuda(), r, a);
        cpu::qk_norm_rope_kv(args.cpu().threads(), r);
        cpu::attention(args.cpu().threads(), a);
    });
}

qwen3vl_status qwen3vl_op_rope_vision(qwen3vl_tensor* qkv, const qwen3vl_tensor* positions, float theta) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_rope_vision");
        Tensor& t = f32(args, qkv, "qkv");
        const Tensor& pos = i32(args, positions, "positions");
        args.shape(t, "qkv", {-1, 3, -1, -1});
        args.shape(pos, "positions", {t.shape[0], 2});
        require(t.shape[3] % 4 == 0,
                "qwen3vl_op_rope_vision: head_dim " + std::to_string(t.shape[3]) + " must be a multiple of 4");
        require(std::isfinite(theta) && theta > 0.0f, "qwen3vl_op_rope_vision: theta must be finite and > 0");
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::rope_vision(args.cuda(), host_mut<float>(t), t.shape[0], t.shape[2], t.shape[3],
                                         host<int32_t>(pos), theta);
        cpu::rope_vision(args.cpu().threads(), host_mut<float>(t), t.shape[0], t.shape[2], t.shape[3],
                         host<int32_t>(pos), theta);
    });
}

qwen3vl_status qwen3vl_op_attention(qwen3vl_tensor* out, const qwen3vl_tensor* q, const qwen3vl_tensor* k_cache,
                                                const qwen3vl_tensor* v_cache, int64_t n_past, qwen3vl_attention_mask mask,
                                                const qwen3vl_tensor* segments, const qwen3vl_tensor* n_past_tensor) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_attention");
        const int mode = raw_enum(mask);
        require(mode == QWEN3VL_ATTENTION_CAUSAL || mode == QWEN3VL_ATTENTION_SEGMENTS,
                "qwen3vl_op_attention: unknown mask " + std::to_string(mode));
        Tensor& o = f32(args, out, "out");
        const Tensor& tq = f32(args, q, "q");
        cpu::AttentionArgs a{};
        const int32_t* device_segments = nullptr;  // SEGMENTS on a device: the tensor's own memory
        std::vector<int32_t> staged;
        a.out = host_mut<float>(o);
        a.q = host<float>(tq);
        disjoint(args, o, "out", tq, "q");
        if (mode == QWEN3VL_ATTENTION_CAUSAL) {
            require(segments == nullptr, "qwen3vl_op_attention: segments must be NULL with QWEN3VL_ATTENTION_CAUSAL");
            const Tensor& kc = args.tensor(k_cache, "k_cache");
            const Tensor& vc = args.tensor(v_cache, "v_cache");
            args.dtype(kc, "k_cache", kWeightDtypes);
            args.dtype(vc, "v_cache", {kc.dtype});
            args.shape(tq, "q", {-1, -1, -1});
            const int64_t T = tq.shape[0], Hq = tq.shape[1], D = tq.shape[2];
            args.shape(kc, "k_cache", {-1, -1, D});
            const int64_t Hkv = kc.shape[1];
            args.shape(vc, "v_cache", {kc.shape[0], Hkv, D});
            args.shape(o, "out", {T, Hq, D});
            require(Hkv >= 1 && Hq % Hkv == 0, "qwen3vl_op_attention: q has " + std::to_string(Hq) +
                                                   " heads, not a multiple of the cache's " + std::to_string(Hkv));
            const NPast np = n_past_of(args, n_past, n_past_tensor, kc.shape[0] - T, T);
            n_past = np.value;
            require(n_past >= 0 && n_past <= kc.shape[0] - T,
                    "qwen3vl_op_attention: n_past " + std::to_string(n_past) + " + " + std::to_string(T) +
                        " tokens exceeds the cache's " + std::to_string(kc.shape[0]) + " rows");
            disjoint(args, o, "out", kc, "k_cache");
            disjoint(args, o, "out", vc, "v_cache");
            a = causal_args(host_mut<float>(o), host<float>(tq), kc.data, vc.data, kc.dtype, T, Hq, Hkv, D, n_past,
                            np.device);
        } else {
            require(k_cache == nullptr && v_cache == nullptr,
                    "qwen3vl_op_attention: k_cache and v_cache must be NULL with QWEN3VL_ATTENTION_SEGMENTS");
            require(n_past_tensor == nullptr,
                    "qwen3vl_op_attention: n_past_tensor must be NULL with QWEN3VL_ATTENTION_SEGMENTS");
            require(n_past == 0, "qwen3vl_op_attention: n_past must be 0 with QWEN3VL_ATTENTION_SEGMENTS");
            const Tensor& seg = i32(args, segments, "segments");
            args.shape(tq, "q", {-1, 3, -1, -1});
            const int64_t T = tq.shape[0], H = tq.shape[2], D = tq.shape[3];
            args.shape(o, "out", {T, H, D});
            args.shape(seg, "segments", {-1});
            require(seg.shape[0] >= 2, "qwen3vl_op_attention: segments needs at least 2 entries (0 and T)");
            const int64_t S = seg.shape[0] - 1;
            // On a GPU the offsets are checked on the device (cuda::sanitize_segments, below), not read back here.
            const int32_t* s = nullptr;
            if (args.is_cuda()) {
                device_segments = host<int32_t>(seg);
            } else {
                s = host_i32(seg, staged);
                require(s[0] == 0 && s[S] == T, "qwen3vl_op_attention: segments must run from 0 to T = " +
                                                    std::to_string(T) + ", got " + std::to_string(s[0]) + " .. " +
                                                    std::to_string(s[S]));
                for (int64_t i = 0; i < S; ++i)
                    require(s[i + 1] >= s[i],
                            "qwen3vl_op_attention: segments decrease at index " + std::to_string(i + 1));
            }
            a.q_stride = 3 * H * D;
            a.k = host<float>(tq) + H * D;
            a.v = host<float>(tq) + 2 * H * D;
            a.kv_dtype = QWEN3VL_DTYPE_F32;
            a.kv_stride = 3 * H * D;
            a.tokens = T;
            a.q_heads = H;
            a.kv_heads = H;
            a.head_dim = D;
            a.causal = false;
            a.segments = s;
            a.n_segments = S;
        }
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
            {
                if (a.causal) return cuda::attention(args.cuda(), a);
                AttentionArgs device_args = a;
                CudaBackend::Scratch sane(args.cuda(), size_t(a.n_segments + 1) * sizeof(int32_t));
                cuda::sanitize_segments(args.cuda(), sane.as<int32_t>(), device_segments, a.n_segments, a.tokens);
                device_args.segments = sane.as<int32_t>();
                return cuda::attention(args.cuda(), device_args);
            }
        cpu::attention(args.cpu().threads(), a);
    });
}

qwen3vl_status qwen3vl_op_position_embedding(qwen3vl_tensor* out, const qwen3vl_tensor* table, int64_t grid_h,
                                                         int64_t grid_w, int64_t merge) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_position_embedding");
        Tensor& o = f32(args, out, "out");
        const Tensor& tab = weight(args, table, "table");
        args.shape(tab, "table", {-1, -1});
        int64_t side = static_cast<int64_t>(std::sqrt(static_cast<double>(tab.shape[0])));
        while (side * side > tab.shape[0]) --side;
        while ((side + 1) * (side + 1) <= tab.shape[0]) ++side;
        require(side * side == tab.shape[0], "qwen3vl_op_position_embedding: table has " +
                                                 std::to_string(tab.shape[0]) + " rows, not a square grid");
        require(merge >= 1, "qwen3vl_op_position_embedding: merge must be >= 1");
        require(grid_h >= 1 && grid_w >= 1 && grid_h % merge == 0 && grid_w % merge == 0 && grid_h <= (1 << 20) &&
                    grid_w <= (1 << 20),
                "qwen3vl_op_position_embedding: grid " + std::to_string(grid_h) + " x " + std::to_string(grid_w) +
                    " must be positive multiples of merge " + std::to_string(merge));
        args.shape(o, "out", {grid_h * grid_w, tab.shape[1]});
        if constexpr (kCudaCompiled)
            if (args.is_cuda())
                return cuda::position_embedding(args.cuda(), host_mut<float>(o), tab.data, tab.dtype, side,
                                                tab.shape[1], grid_h, grid_w, merge);
        cpu::position_embedding(args.cpu().threads(), host_mut<float>(o), tab.data, tab.dtype, side, tab.shape[1],
                                grid_h, grid_w, merge);
    });
}

}  // extern "C"
