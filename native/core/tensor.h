// A tensor: shape, element type and memory on one backend. Row-major, contiguous. The memory is shared by the
// tensor and its views (storage): it goes back to the backend's pool, or releases the checkpoint mapping it points
// into, when the last of them is freed. The backend itself must outlive its tensors.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "backend.h"
#include "qwen3vl.h"

namespace qwen3vl {

struct Tensor {
    Backend* backend = nullptr;
    qwen3vl_dtype dtype = QWEN3VL_DTYPE_F32;
    int ndim = 0;
    std::array<int64_t, QWEN3VL_MAX_DIMS> shape{};
    void* data = nullptr;
    uint64_t bytes = 0;
    std::shared_ptr<void> storage;

    uint64_t elements() const {
        uint64_t n = 1;
        for (int i = 0; i < ndim; ++i) n *= static_cast<uint64_t>(shape[i]);
        return n;
    }
};

// A new tensor with memory from the backend's pool. Throws INVALID_ARGUMENT, LIMIT_EXCEEDED or OUT_OF_MEMORY.
Tensor make_tensor(Backend& backend, qwen3vl_dtype dtype, int ndim, const int64_t* shape);

// Element count of a shape, or throws INVALID_ARGUMENT / LIMIT_EXCEEDED on a bad or overflowing shape.
uint64_t checked_element_count(int ndim, const int64_t* shape, size_t element_size);

}  // namespace qwen3vl
