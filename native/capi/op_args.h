// The argument checks of the op entry points (capi/ops_*.cpp), one set for every op: tensors present, on one
// backend, of the expected dtype and shape, ranges and aliasing, with messages that name the op and the tensor.
// Then the op runs on the tensors' backend (core/ops.h): run() calls it and puts the op's name before a message the
// backend raises about what the tensors hold.
#pragma once

#include <cmath>
#include <initializer_list>
#include <string>

#include "backend.h"
#include "dtype.h"
#include "error.h"
#include "handles.h"
#include "qwen3vl.h"
#include "tensor.h"
#include "weight.h"

namespace qwen3vl {

// Rows of a tensor for per-row ops: product of all dimensions but the last.
inline int64_t rows_of(const Tensor& t) {
    int64_t r = 1;
    for (int i = 0; i + 1 < t.ndim; ++i) r *= t.shape[static_cast<size_t>(i)];
    return r;
}
inline int64_t last_dim(const Tensor& t) { return t.ndim > 0 ? t.shape[static_cast<size_t>(t.ndim - 1)] : 1; }

inline std::string shape_text(const Tensor& t) {
    std::string s = "[";
    for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[static_cast<size_t>(i)]);
    return s + "]";
}

inline bool overlap(const Tensor& a, const Tensor& b) {
    const auto* a0 = static_cast<const char*>(a.data);
    const auto* b0 = static_cast<const char*>(b.data);
    return a.bytes > 0 && b.bytes > 0 && a0 < b0 + b.bytes && b0 < a0 + a.bytes;
}

// A weight tensor (checked by OpArgs::weight) as the backends take it.
inline Weight weight_of(const Tensor& t) {
    Weight w;
    w.data = t.data;
    w.dtype = t.dtype;
    w.rows = t.ndim >= 2 ? t.shape[0] : 1;
    w.cols = last_dim(t);
    if (t.dtype == QWEN3VL_DTYPE_Q8) {
        w.scales = t.scales;
        w.scale_dtype = QWEN3VL_DTYPE_F16;
        w.block_rows = 1;
        w.block_cols = 32;
    }
    if (t.dtype == QWEN3VL_DTYPE_Q4) {  // scales: the 16-byte super-block headers (f16 d, dmin, packed 6-bit groups)
        w.scales = t.scales;
        w.scale_dtype = QWEN3VL_DTYPE_F16;
        w.block_rows = 1;
        w.block_cols = 256;
    }
    return w;
}
inline Weight weight_of(const Tensor* t) { return t ? weight_of(*t) : Weight{}; }

template <class T>
T* data_of(Tensor& t) {
    return static_cast<T*>(t.data);
}
template <class T>
const T* data_of(const Tensor& t) {
    return static_cast<const T*>(t.data);
}

class OpArgs {
public:
    explicit OpArgs(const char* op) : op_(op) {}

    const char* op() const { return op_; }

    // INVALID_ARGUMENT "<op>: <message>" unless condition.
    void require(bool condition, const std::string& message) const {
        if (!condition) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(op_) + ": " + message);
    }

    // The tensor behind a handle; INVALID_ARGUMENT when NULL. All tensors of one op must share a backend.
    const Tensor& tensor(const qwen3vl_tensor* t, const char* name) {
        // Messages are built only on failure: this runs for every tensor of every op.
        if (t == nullptr) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(op_) + ": " + name + " is NULL");
        if (!backend_) backend_ = t->t.backend;
        if (t->t.backend != backend_)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(op_) + ": " + name + " is on another backend");
        return t->t;
    }
    Tensor& tensor(qwen3vl_tensor* t, const char* name) {
        return const_cast<Tensor&>(tensor(static_cast<const qwen3vl_tensor*>(t), name));
    }

    void dtype(const Tensor& t, const char* name, std::initializer_list<qwen3vl_dtype> allowed) const {
        for (qwen3vl_dtype d : allowed)
            if (t.dtype == d) return;
        std::string list;
        for (qwen3vl_dtype d : allowed) list += std::string(list.empty() ? "" : " or ") + dtype_name(d);
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
             std::string(op_) + ": " + name + " must be " + list + ", got " + dtype_name(t.dtype));
    }

    // A tensor of one dtype.
    const Tensor& f32(const qwen3vl_tensor* h, const char* name) { return typed(h, name, QWEN3VL_DTYPE_F32); }
    Tensor& f32(qwen3vl_tensor* h, const char* name) { return typed(h, name, QWEN3VL_DTYPE_F32); }
    const Tensor& i32(const qwen3vl_tensor* h, const char* name) { return typed(h, name, QWEN3VL_DTYPE_I32); }
    Tensor& i32(qwen3vl_tensor* h, const char* name) { return typed(h, name, QWEN3VL_DTYPE_I32); }

    // A weight (or KV cache): f32, f16 or bf16.
    const Tensor& weight(const qwen3vl_tensor* h, const char* name) {
        const Tensor& t = tensor(h, name);
        dtype(t, name, {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_BF16});
        return t;
    }
    Tensor& weight(qwen3vl_tensor* h, const char* name) {
        return const_cast<Tensor&>(weight(static_cast<const qwen3vl_tensor*>(h), name));
    }
    // A KV cache: f32, f16, bf16 or Q8 (blocks of 32 along the head dimension: make_tensor checked that it divides).
    const Tensor& cache(const qwen3vl_tensor* h, const char* name) {
        const Tensor& t = tensor(h, name);
        dtype(t, name, {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_BF16, QWEN3VL_DTYPE_Q8});
        return t;
    }
    Tensor& cache(qwen3vl_tensor* h, const char* name) {
        return const_cast<Tensor&>(cache(static_cast<const qwen3vl_tensor*>(h), name));
    }
    // A projection matrix or embedding table: a weight, or block-quantized (Q8, Q4).
    const Tensor& matrix(const qwen3vl_tensor* h, const char* name) {
        const Tensor& t = tensor(h, name);
        dtype(t, name, {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_BF16, QWEN3VL_DTYPE_Q8, QWEN3VL_DTYPE_Q4});
        return t;
    }
    // An optional weight vector [n] (a bias, a norm's weight): nullptr for NULL.
    const Tensor* optional_vector(const qwen3vl_tensor* h, const char* name, int64_t n) {
        if (!h) return nullptr;
        const Tensor& t = weight(h, name);
        shape(t, name, {n});
        return &t;
    }

    // Exact shape check; a negative expected dimension matches anything.
    void shape(const Tensor& t, const char* name, std::initializer_list<int64_t> expected) const {
        bool ok = t.ndim == static_cast<int>(expected.size());
        int i = 0;
        for (int64_t e : expected) {
            if (ok && e >= 0 && t.shape[static_cast<size_t>(i)] != e) ok = false;
            ++i;
        }
        if (ok) return;
        std::string want;
        for (int64_t e : expected) want += (want.empty() ? "" : ", ") + (e < 0 ? std::string("*") : std::to_string(e));
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
             std::string(op_) + ": " + name + " has shape " + shape_text(t) + ", expected [" + want + "]");
    }

    // t has ref's shape.
    void same_shape(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) const {
        bool ok = t.ndim == ref.ndim;
        for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[size_t(i)] == ref.shape[size_t(i)];
        if (!ok)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(op_) + ": " + name + " has shape " + shape_text(t) +
                                                      ", expected " + shape_text(ref) + " (the shape of " + ref_name +
                                                      ")");
    }

    // out has x's leading dimensions and n as its last (the output of a projection of x).
    void projected_shape(const Tensor& out, const char* name, const Tensor& x, int64_t n) const {
        bool ok = out.ndim == x.ndim;
        for (int i = 0; ok && i + 1 < x.ndim; ++i) ok = out.shape[size_t(i)] == x.shape[size_t(i)];
        if (ok && last_dim(out) == n) return;
        std::string want;
        for (int i = 0; i + 1 < x.ndim; ++i) want += std::to_string(x.shape[size_t(i)]) + ", ";
        want += std::to_string(n);
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(op_) + ": " + name + " has shape " + shape_text(out) +
                                                  ", expected [" + want + "] (x's leading dimensions, N)");
    }

    void at_least_1d(const Tensor& t, const char* name) const {
        require(t.ndim >= 1 && last_dim(t) >= 1, std::string(name) + " must have a last dimension >= 1");
    }

    // a and b must not share memory.
    void disjoint(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) const {
        require(!overlap(a, b), std::string(a_name) + " overlaps " + b_name + " (they must not share memory)");
    }
    // out and in must be the same memory (in place) or not overlap at all.
    void in_place_or_disjoint(const Tensor& out, const char* out_name, const Tensor& in, const char* in_name) const {
        require(!overlap(out, in) || (out.data == in.data && out.bytes == in.bytes),
                std::string(out_name) + " partly overlaps " + in_name +
                    " (it may only be the same tensor or separate memory)");
    }

    void eps(float eps) const { require(std::isfinite(eps) && eps >= 0.0f, "eps must be finite and >= 0"); }
    // A 0/1 flag of the ABI (int32_t).
    bool flag(int32_t value, const char* name) const {
        require(value == 0 || value == 1, std::string(name) + " must be 0 or 1, got " + std::to_string(value));
        return value == 1;
    }

    // Runs the op on the tensors' backend. A message the backend raises about the tensors' contents (INVALID_ARGUMENT
    // without a name) gets the op's name in front.
    template <class F>
    void run(F&& op) {
        if (backend_ == nullptr) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(op_) + ": no tensors");
        try {
            op(*backend_);
        } catch (const Error& e) {
            if (e.status() != QWEN3VL_STATUS_INVALID_ARGUMENT || std::string(e.what()).rfind(op_, 0) == 0) throw;
            fail(e.status(), std::string(op_) + ": " + e.what());
        }
    }

private:
    Tensor& typed(const qwen3vl_tensor* h, const char* name, qwen3vl_dtype d) {
        const Tensor& t = tensor(h, name);
        dtype(t, name, {d});
        return const_cast<Tensor&>(t);
    }

    const char* op_;
    Backend* backend_ = nullptr;
};

}  // namespace qwen3vl
