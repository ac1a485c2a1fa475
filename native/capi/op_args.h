// Argument checking shared by the op entry points (capi/ops_*.cpp): tensors present, on one backend, of the
// expected dtype and shape, with messages that name the op and the tensor. Then the backend that runs the op
// (CPU, or CUDA when compiled in).
#pragma once

#include <initializer_list>
#include <string>

#include "cpu_backend.h"
#include "cuda_backend.h"
#include "dtype.h"
#include "error.h"
#include "handles.h"
#include "qwen3vl.h"
#include "tensor.h"

namespace qwen3vl {

class OpArgs {
public:
    explicit OpArgs(const char* op) : op_(op) {}

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

    void dtype(const Tensor& t, const char* name, std::initializer_list<qwen3vl_dtype> allowed) {
        for (qwen3vl_dtype d : allowed)
            if (t.dtype == d) return;
        std::string list;
        for (qwen3vl_dtype d : allowed) list += std::string(list.empty() ? "" : " or ") + dtype_name(d);
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
             std::string(op_) + ": " + name + " must be " + list + ", got " + dtype_name(t.dtype));
    }

    // Exact shape check; a negative expected dimension matches anything.
    void shape(const Tensor& t, const char* name, std::initializer_list<int64_t> expected) {
        bool ok = t.ndim == static_cast<int>(expected.size());
        int i = 0;
        for (int64_t e : expected) {
            if (ok && e >= 0 && t.shape[static_cast<size_t>(i)] != e) ok = false;
            ++i;
        }
        if (!ok) {
            std::string want, got;
            for (int64_t e : expected) want += (want.empty() ? "" : ", ") + (e < 0 ? std::string("*") : std::to_string(e));
            for (int j = 0; j < t.ndim; ++j) got += (j ? ", " : "") + std::to_string(t.shape[static_cast<size_t>(j)]);
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
                 std::string(op_) + ": " + name + " has shape [" + got + "], expected [" + want + "]");
        }
    }

    // The CPU backend running the op, or UNSUPPORTED naming the op for a backend that lacks it.
    CpuBackend& cpu() {
        require(backend_ != nullptr, std::string(op_) + ": no tensors");
        if (backend_->type() != QWEN3VL_BACKEND_CPU)
            fail(QWEN3VL_STATUS_UNSUPPORTED, std::string(op_) + " is not implemented on " + backend_->name());
        return static_cast<CpuBackend&>(*backend_);
    }

    // True when the op's tensors live on a CUDA backend. The entry points dispatch with
    // `if constexpr (kCudaCompiled) if (args.is_cuda()) return cuda::op(args.cuda(), ...);` before the CPU call,
    // so a build without CUDA never references the CUDA kernels.
    bool is_cuda() const { return backend_ != nullptr && backend_->type() == QWEN3VL_BACKEND_CUDA; }
    CudaBackend& cuda() { return static_cast<CudaBackend&>(*backend_); }

    const char* op() const { return op_; }

private:
    const char* op_;
    Backend* backend_ = nullptr;
};

// Rows of a tensor for per-row ops: product of all dimensions but the last.
inline int64_t rows_of(const Tensor& t) {
    int64_t r = 1;
    for (int i = 0; i + 1 < t.ndim; ++i) r *= t.shape[static_cast<size_t>(i)];
    return r;
}
inline int64_t last_dim(const Tensor& t) { return t.ndim > 0 ? t.shape[static_cast<size_t>(t.ndim - 1)] : 1; }

}  // namespace qwen3vl
