#include "tensor.h"

#include <limits>
#include <string>

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

}  // namespace qwen3vl
