#include "tensor.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "dtype.h"
#include "error.h"
#include "quant.h"

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

uint64_t tensor_bytes(qwen3vl_dtype dtype, int ndim, const int64_t* shape) {
    require(dtype_valid(dtype), "unknown dtype " + std::to_string(static_cast<int>(dtype)));
    // 2 bytes per element bounds every dtype's size, the block formats' scales included.
    const uint64_t count = checked_element_count(ndim, shape, 4);
    if (!dtype_is_block(dtype)) return count * dtype_size(dtype);
    // Q4: weight matrices [N, K]. Q8: weight matrices, or KV caches [capacity, Hkv, D] (rows of the last dimension).
    if (dtype == QWEN3VL_DTYPE_Q4)
        require(ndim == 2, std::string(dtype_name(dtype)) + " tensors are 2-D weight matrices [N, K], got " +
                               std::to_string(ndim) + " dimensions");
    else
        require(ndim == 2 || ndim == 3, std::string(dtype_name(dtype)) +
                                            " tensors are 2-D weight matrices [N, K] or 3-D KV caches [capacity, "
                                            "Hkv, D], got " + std::to_string(ndim) + " dimensions");
    const int64_t block = dtype == QWEN3VL_DTYPE_Q4 ? kQ4Super : kQ8Block;
    const int64_t row = shape[ndim - 1];
    require(row % block == 0, std::string(dtype_name(dtype)) + " rows are whole blocks of " + std::to_string(block) +
                                  " weights: " + (ndim == 2 ? "K = " : "D = ") + std::to_string(row) +
                                  " is not a multiple");
    if (dtype == QWEN3VL_DTYPE_Q4) return count / 2 + count / kQ4Super * kQ4HeaderBytes;
    return count + count / kQ8Block * 2;
}

Tensor make_tensor(Backend& backend, qwen3vl_dtype dtype, int ndim, const int64_t* shape, bool persistent) {
    const uint64_t bytes = tensor_bytes(dtype, ndim, shape);
    Tensor t;
    t.backend = &backend;
    t.dtype = dtype;
    t.ndim = ndim;
    for (int i = 0; i < ndim; ++i) t.shape[static_cast<size_t>(i)] = shape[i];
    t.bytes = bytes;
    if (t.bytes > SIZE_MAX) fail(QWEN3VL_STATUS_LIMIT_EXCEEDED, "tensor too large for this platform");
    Backend* owner = &backend;
    t.data = backend.allocate(static_cast<size_t>(t.bytes), persistent);
    try {
        t.storage = std::shared_ptr<void>(t.data, [owner](void* p) { owner->deallocate(p); });
    } catch (...) {
        backend.deallocate(t.data);
        throw;
    }
    if (dtype_is_block(dtype)) t.scales = static_cast<uint8_t*>(t.data) + block_values_bytes(t);
    return t;
}

uint64_t host_bytes(const Tensor& t, qwen3vl_dtype host_dtype) {
    return dtype_is_block(host_dtype) ? t.bytes : t.elements() * dtype_size(host_dtype);
}

// A copy from dtype `from` to dtype `to`, one of them the tensor's.
void require_pair(qwen3vl_dtype from, qwen3vl_dtype to, qwen3vl_dtype tensor_dtype) {
    const qwen3vl_dtype host = from == tensor_dtype ? to : from;
    const bool ok = from == to || (dtype_is_float(from) && dtype_is_float(to)) ||
                    (dtype_is_block(tensor_dtype) && dtype_is_float(host));
    require(ok, std::string("cannot convert ") + dtype_name(from) + " to " + dtype_name(to));
}

namespace {

// The backend's quantizer for the tensor's block format, rows of w (rows first_row.. of the tensor) into the planes at
// (values, scales).
void quantize_into(Backend& be, qwen3vl_dtype dtype, void* values, void* scales, const Weight& w, int64_t first_row) {
    if (dtype == QWEN3VL_DTYPE_Q4)
        be.quantize_q4(static_cast<uint8_t*>(values), static_cast<uint8_t*>(scales), w, first_row);
    else
        be.quantize_q8(static_cast<int8_t*>(values), static_cast<uint16_t*>(scales), w, first_row);
}

// Rows staged at a time when a block tensor is quantized on a backend with memory of its own: the staged source stays
// under 64 MiB (the 8B's 151936 x 4096 lm_head would otherwise stage 1.2 GB of bf16 beside the weights).
int64_t staging_rows(int64_t K, qwen3vl_dtype src_dtype) {
    return std::max<int64_t>(1, (int64_t(64) << 20) / std::max<int64_t>(1, K * int64_t(dtype_size(src_dtype))));
}

}  // namespace

void write_tensor(Tensor& t, qwen3vl_dtype src_dtype, const void* src) {
    require_pair(src_dtype, t.dtype, t.dtype);
    Backend& be = *t.backend;
    if (!dtype_is_block(t.dtype)) {
        be.upload(t.data, t.dtype, src, src_dtype, static_cast<size_t>(t.elements()));
        return;
    }
    const uint64_t values = block_values_bytes(t);
    if (src_dtype == t.dtype) {
        be.upload_bytes(t.data, src, static_cast<size_t>(values));
        be.upload_bytes(t.scales, static_cast<const uint8_t*>(src) + values, static_cast<size_t>(t.bytes - values));
        return;
    }
    // Rows of the last dimension (a 3-D Q8 KV cache [capacity, Hkv, D] is the matrix [capacity * Hkv, D]).
    const int64_t K = t.shape[static_cast<size_t>(t.ndim - 1)], N = static_cast<int64_t>(t.elements()) / std::max<int64_t>(1, K);
    Weight w;
    w.dtype = src_dtype;
    w.rows = N;
    w.cols = K;
    if (be.host_memory()) {
        w.data = src;
        quantize_into(be, t.dtype, t.data, t.scales, w, 0);
        return;
    }
    Tensor matrix = t;  // write_tensor_rows takes a 2-D tensor: the same planes as [N, K]
    matrix.ndim = 2;
    matrix.shape[0] = N;
    matrix.shape[1] = K;
    const int64_t chunk = staging_rows(K, src_dtype);
    for (int64_t r0 = 0; r0 < N; r0 += chunk)
        write_tensor_rows(matrix, r0, std::min(chunk, N - r0), src_dtype,
                          static_cast<const uint8_t*>(src) + size_t(r0 * K) * dtype_size(src_dtype));
}

void write_tensor_rows(Tensor& t, int64_t r0, int64_t rows, qwen3vl_dtype src_dtype, const void* src) {
    require(t.ndim == 2 && r0 >= 0 && rows >= 0 && r0 + rows <= t.shape[0], "rows outside the tensor");
    require(dtype_is_float(src_dtype), std::string("rows are written from float data, not ") + dtype_name(src_dtype));
    const int64_t K = t.shape[1];
    Backend& be = *t.backend;
    if (!dtype_is_block(t.dtype)) {
        require_pair(src_dtype, t.dtype, t.dtype);
        be.upload(static_cast<uint8_t*>(t.data) + size_t(r0 * K) * dtype_size(t.dtype), t.dtype, src, src_dtype,
                  static_cast<size_t>(rows * K));
        return;
    }
    Weight w;
    w.dtype = src_dtype;
    w.rows = rows;
    w.cols = K;
    const bool q4 = t.dtype == QWEN3VL_DTYPE_Q4;
    void* q = static_cast<uint8_t*>(t.data) + (q4 ? r0 * K / 2 : r0 * K);
    void* d = static_cast<uint8_t*>(t.scales) + (q4 ? r0 * (K / kQ4Super) * kQ4HeaderBytes : r0 * (K / kQ8Block) * 2);
    if (be.host_memory()) {
        w.data = src;
        quantize_into(be, t.dtype, q, d, w, r0);
        return;
    }
    const int64_t shape[2] = {rows, K};
    const Tensor staged = make_tensor(be, src_dtype, 2, shape);
    be.upload(staged.data, src_dtype, src, src_dtype, static_cast<size_t>(rows * K));
    w.data = staged.data;
    quantize_into(be, t.dtype, q, d, w, r0);
}

void read_tensor(const Tensor& t, qwen3vl_dtype dst_dtype, void* dst) {
    require_pair(t.dtype, dst_dtype, t.dtype);
    Backend& be = *t.backend;
    if (!dtype_is_block(t.dtype)) {
        be.download(dst, dst_dtype, t.data, t.dtype, static_cast<size_t>(t.elements()));
        return;
    }
    const uint64_t values = block_values_bytes(t);
    std::vector<uint8_t> raw;
    uint8_t* planes = static_cast<uint8_t*>(dst);
    if (dst_dtype != t.dtype) {
        raw.resize(static_cast<size_t>(t.bytes));
        planes = raw.data();
    }
    be.download_bytes(planes, t.data, static_cast<size_t>(values));
    be.download_bytes(planes + values, t.scales, static_cast<size_t>(t.bytes - values));
    if (dst_dtype == t.dtype) return;
    const int64_t n = static_cast<int64_t>(t.elements());
    auto dequantize = [&](float* out) {
        if (t.dtype == QWEN3VL_DTYPE_Q4)
            dequantize_q4(planes, planes + values, n, out);
        else
            dequantize_q8(reinterpret_cast<const int8_t*>(planes), reinterpret_cast<const uint16_t*>(planes + values), n,
                          out);
    };
    if (dst_dtype == QWEN3VL_DTYPE_F32) {
        dequantize(static_cast<float*>(dst));
        return;
    }
    std::vector<float> f(static_cast<size_t>(n));
    dequantize(f.data());
    auto* out = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i)
        out[i] = dst_dtype == QWEN3VL_DTYPE_BF16 ? f32_to_bf16(f[static_cast<size_t>(i)]) : f32_to_f16(f[static_cast<size_t>(i)]);
}

}  // namespace qwen3vl
