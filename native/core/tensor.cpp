#include "tensor.h"

#include <limits>
#include <string>

#include "dtype.h"
#include "error.h"

namespace qwen3vl {

uint64_t checked_element_count(int ndim, const int64_t* shape, size_t element_size) {
    require(ndim >= 1 && ndim <= QWEN3VL_MAX_DIMS,
            "ndim must be between 1 and " + std::to_string(QWEN3VL_MAX_DIMS) + ", got " + std::to_string(ndim));
    require(shape != nullptr, "shape is NULL");
    const uint64_t limit = std::numeric_limits<uint64_t>::max() / (element_size ? element_size : 1);
    uint64_t n = 1;
    for (int i = 0; i < ndim; ++i) {
        require(shape[i] >= 0, "shape[" + std::to_string(i) + "] is negative (" + std::to_string(shape[i]) + ")");
        const uint64_t d = static_cast<uint64_t>(shape[i]);
        if (d != 0 && n > limit / d) fail(QWEN3VL_STATUS_LIMIT_EXCEEDED, "tensor shape overflows 64-bit byte size");
        n *= d;
    }
    return n;
}

Tensor make_tensor(Backend& backend, qwen3vl_dtype dtype, int ndim, const int64_t* shape) {
    require(dtype_valid(dtype), "unknown dtype " + std::to_string(static_cast<int>(dtype)));
    const uint64_t count = checked_element_count(ndim, shape, dtype_size(dtype));
    Tensor t;
    t.backend = &backend;
    t.dtype = dtype;
    t.ndim = ndim;
    for (int i = 0; i < ndim; ++i) t.shape[static_cast<size_t>(i)] = shape[i];
    t.bytes = count * dtype_size(dtype);
    if (t.bytes > SIZE_MAX) fail(QWEN3VL_STATUS_LIMIT_EXCEEDED, "tensor too large for this platform");
    Backend* owner = &backend;
    t.data = backend.allocate(static_cast<size_t>(t.bytes));
    try {
        t.storage = std::shared_ptr<void>(t.data, [owner](void* p) { owner->deallocate(p); });
    } catch (...) {
        backend.deallocate(t.data);
        throw;
    }
    return t;
}

}  // namespace qwen3vl
