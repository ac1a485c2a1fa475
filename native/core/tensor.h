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
    // A block-quantized weight (dtype_is_block): its scale plane (data holds the int8 plane). In a tensor of its own
    // it follows the int8 plane; in a quantized checkpoint mapped on the CPU it is a tensor of the file. NULL else.
    void* scales = nullptr;
    uint64_t bytes = 0;  // all planes together
    std::shared_ptr<void> storage;

    uint64_t elements() const {
        uint64_t n = 1;
        for (int i = 0; i < ndim; ++i) n *= static_cast<uint64_t>(shape[i]);
        return n;
    }
};

// A new tensor with memory from the backend's pool. Throws INVALID_ARGUMENT, LIMIT_EXCEEDED or OUT_OF_MEMORY.
// persistent: memory for the model's lifetime (a weight), sized exactly rather than in the pool's reusable classes.
Tensor make_tensor(Backend& backend, qwen3vl_dtype dtype, int ndim, const int64_t* shape, bool persistent = false);

// Bytes of a tensor of this dtype and shape (both planes for a block format, which must be 2-D with whole blocks:
// INVALID_ARGUMENT otherwise). Throws as checked_element_count.
uint64_t tensor_bytes(qwen3vl_dtype dtype, int ndim, const int64_t* shape);
// Bytes of the value plane of a block-format tensor (where its scale plane starts): Q8 one per weight, Q4 half.
inline uint64_t block_values_bytes(qwen3vl_dtype dtype, uint64_t elements) {
    return dtype == QWEN3VL_DTYPE_Q4 ? elements / 2 : elements;
}
inline uint64_t block_values_bytes(const Tensor& t) { return block_values_bytes(t.dtype, t.elements()); }

// Host data of src_dtype (count elements; for a block src_dtype the tensor's raw planes) into the tensor, converted
// or quantized to its dtype (a Q8 / Q4 tensor from f32/f16/bf16 through the backend's quantize_q8 / q4, after staging the data in
// backend memory when the backend's memory is not the host's). INVALID_ARGUMENT for a pair that does not convert.
void write_tensor(Tensor& t, qwen3vl_dtype src_dtype, const void* src);
// Rows [r0, r0 + rows) of a 2-D tensor (dense or block-quantized) from host data of a float dtype (rows * shape[1] elements),
// converted or quantized as write_tensor does: for weights written in pieces (dequantized from another format).
void write_tensor_rows(Tensor& t, int64_t r0, int64_t rows, qwen3vl_dtype src_dtype, const void* src);
// The tensor into host memory as dst_dtype (a block tensor dequantized, or its raw planes for dst_dtype its dtype).
void read_tensor(const Tensor& t, qwen3vl_dtype dst_dtype, void* dst);
// INVALID_ARGUMENT "cannot convert <from> to <to>" unless a copy between them exists for a tensor of tensor_dtype.
void require_pair(qwen3vl_dtype from, qwen3vl_dtype to, qwen3vl_dtype tensor_dtype);
// Bytes the host side of write_tensor / read_tensor holds for this dtype.
uint64_t host_bytes(const Tensor& t, qwen3vl_dtype host_dtype);

// Element count of a shape, or throws INVALID_ARGUMENT / LIMIT_EXCEEDED on a bad or overflowing shape.
uint64_t checked_element_count(int ndim, const int64_t* shape, size_t element_size);

}  // namespace qwen3vl
