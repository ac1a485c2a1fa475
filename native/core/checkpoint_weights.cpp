// See checkpoint_weights.h.
#include "checkpoint_weights.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "dtype.h"
#include "error.h"
#include "quant.h"

namespace qwen3vl {
namespace {

qwen3vl_dtype weight_dtype(const TensorView& v) {
    switch (v.dtype) {
        case SafetensorsDType::F32: return QWEN3VL_DTYPE_F32;
        case SafetensorsDType::F16: return QWEN3VL_DTYPE_F16;
        case SafetensorsDType::BF16: return QWEN3VL_DTYPE_BF16;
        default: require_weight_dtype(v);  // throws UNSUPPORTED naming the tensor and file
    }
    fail(QWEN3VL_STATUS_UNSUPPORTED, "tensor " + v.name + " has an unsupported dtype");
}

// An FP8 block-scaled weight (validated at open) into t, a dense or Q8 tensor of its shape: dequantized to f32 on the
// host a group of scale-block rows at a time (at most ~64 MB of f32), each group converted or quantized on the backend.
void load_fp8(Tensor& t, const Checkpoint& ck, const TensorView& v) {
    const TensorView& s = ck.scale_inv(v);
    const QuantizationConfig& qc = ck.config().quantization;
    const int64_t N = v.shape[0], K = v.shape[1];
    const int64_t budget = std::max<int64_t>(1, (int64_t(64) << 20) / (4 * std::max<int64_t>(K, 1)));
    const int64_t chunk = std::max<int64_t>(1, budget / qc.block_rows) * qc.block_rows;
    std::vector<float> rows(size_t(std::min(chunk, N) * K));
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        const int64_t n = std::min(chunk, N - r0);
        dequantize_fp8_rows(v.data, K, r0, n, s.data, s.dtype == SafetensorsDType::BF16, s.shape[1], qc.block_rows,
                            qc.block_cols, rows.data());
        write_tensor_rows(t, r0, n, QWEN3VL_DTYPE_F32, rows.data());
    }
}

}  // namespace

qwen3vl_dtype stored_dtype(const TensorView& v) {
    if (v.dtype == SafetensorsDType::F8_E4M3) return QWEN3VL_DTYPE_BF16;
    if (v.dtype == SafetensorsDType::I8) return QWEN3VL_DTYPE_Q8;  // validated at open: a q8 weight with its scales
    if (v.dtype == SafetensorsDType::U8) return QWEN3VL_DTYPE_Q4;  // validated at open: q4 nibbles with their headers
    return weight_dtype(v);
}

namespace {

// A q8 weight of the engine's own format (I8 values + F16 <name>_scale, validated at open) as dtype: a view of both
// planes in the mapping (the CPU, Q8), the planes uploaded (Q8 elsewhere), or dequantized (another float dtype).
Tensor load_q8(const std::shared_ptr<Checkpoint>& checkpoint, Backend& b, const TensorView& v, qwen3vl_dtype dtype) {
    const TensorView& s = checkpoint->q8_scale(v);
    if (dtype != QWEN3VL_DTYPE_Q8 && !dtype_is_float(dtype))
        fail(dtype == QWEN3VL_DTYPE_Q4 ? QWEN3VL_STATUS_UNSUPPORTED : QWEN3VL_STATUS_INVALID_ARGUMENT,
             "weight " + v.name + " (q8) cannot be loaded as " + dtype_name(dtype) +
                 (dtype == QWEN3VL_DTYPE_Q4 ? " (re-quantizing 8-bit weights to 4 bits compounds two roundings: quantize "
                                              "the original bf16 checkpoint to q4)"
                                            : ""));
    Tensor t;
    if (dtype == QWEN3VL_DTYPE_Q8 && b.host_memory()) {
        t.backend = &b;
        t.dtype = dtype;
        t.ndim = 2;
        t.shape[0] = v.shape[0];
        t.shape[1] = v.shape[1];
        t.data = const_cast<uint8_t*>(v.data);  // read-only by contract
        t.scales = const_cast<uint8_t*>(s.data);
        t.bytes = v.bytes + s.bytes;
        t.storage = checkpoint;
        return t;
    }
    const int64_t shape[2] = {v.shape[0], v.shape[1]};
    t = make_tensor(b, dtype, 2, shape, /*persistent=*/true);
    if (dtype == QWEN3VL_DTYPE_Q8) {
        b.upload_bytes(t.data, v.data, static_cast<size_t>(v.bytes));
        b.upload_bytes(t.scales, s.data, static_cast<size_t>(s.bytes));
        return t;
    }
    // Dequantized a group of rows at a time (f32 on the host, then converted on the backend).
    const int64_t K = v.shape[1];
    const int64_t chunk = std::max<int64_t>(1, (int64_t(64) << 20) / (4 * K));
    std::vector<float> rows(size_t(std::min(chunk, v.shape[0]) * K));
    std::vector<uint16_t> d(size_t(std::min(chunk, v.shape[0]) * (K / kQ8Block)));
    for (int64_t r0 = 0; r0 < v.shape[0]; r0 += chunk) {
        const int64_t n = std::min(chunk, v.shape[0] - r0);
        std::memcpy(d.data(), s.data + size_t(r0 * (K / kQ8Block)) * 2, size_t(n * (K / kQ8Block)) * 2);
        dequantize_q8(reinterpret_cast<const int8_t*>(v.data) + r0 * K, d.data(), n * K, rows.data());
        write_tensor_rows(t, r0, n, QWEN3VL_DTYPE_F32, rows.data());
    }
    return t;
}

// A q4 weight of the engine's own format (U8 nibbles [N, K / 2] + U8 <name>_header, validated at open) as dtype: a
// view of both planes in the mapping (the CPU, Q4), uploaded (Q4 elsewhere), or dequantized (a float dtype).
// Re-quantizing it to Q8 would compound two roundings: refused by name.
Tensor load_q4(const std::shared_ptr<Checkpoint>& checkpoint, Backend& b, const TensorView& v, qwen3vl_dtype dtype) {
    const TensorView& h = checkpoint->q4_header(v);
    if (dtype != QWEN3VL_DTYPE_Q4 && !dtype_is_float(dtype))
        fail(dtype == QWEN3VL_DTYPE_Q8 ? QWEN3VL_STATUS_UNSUPPORTED : QWEN3VL_STATUS_INVALID_ARGUMENT,
             "weight " + v.name + " is stored in q4 and cannot be loaded as " + dtype_name(dtype) +
                 (dtype == QWEN3VL_DTYPE_Q8 ? " (re-quantizing 4-bit weights to 8 bits gains nothing: load it as "
                                              "stored, or quantize the original bf16 checkpoint to q8)"
                                            : ""));
    const int64_t N = v.shape[0], K = v.shape[1] * 2;
    Tensor t;
    if (dtype == QWEN3VL_DTYPE_Q4 && b.host_memory()) {
        t.backend = &b;
        t.dtype = dtype;
        t.ndim = 2;
        t.shape[0] = N;
        t.shape[1] = K;
        t.data = const_cast<uint8_t*>(v.data);  // read-only by contract
        t.scales = const_cast<uint8_t*>(h.data);
        t.bytes = v.bytes + h.bytes;
        t.storage = checkpoint;
        return t;
    }
    const int64_t shape[2] = {N, K};
    t = make_tensor(b, dtype, 2, shape, /*persistent=*/true);
    if (dtype == QWEN3VL_DTYPE_Q4) {
        b.upload_bytes(t.data, v.data, static_cast<size_t>(v.bytes));
        b.upload_bytes(t.scales, h.data, static_cast<size_t>(h.bytes));
        return t;
    }
    const int64_t chunk = std::max<int64_t>(1, (int64_t(64) << 20) / (4 * K));
    std::vector<float> rows(size_t(std::min(chunk, N) * K));
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        const int64_t n = std::min(chunk, N - r0);
        dequantize_q4(v.data + size_t(r0 * K / 2), h.data + size_t(r0 * (K / kQ4Super) * kQ4HeaderBytes), n * K,
                      rows.data());
        write_tensor_rows(t, r0, n, QWEN3VL_DTYPE_F32, rows.data());
    }
    return t;
}

}  // namespace

Tensor load_weight(const std::shared_ptr<Checkpoint>& checkpoint, Backend& b, const TensorView& v, qwen3vl_dtype dtype) {
    if (v.dtype == SafetensorsDType::I8) return load_q8(checkpoint, b, v, dtype);
    if (v.dtype == SafetensorsDType::U8) return load_q4(checkpoint, b, v, dtype);
    const std::string& name = v.name;
    const bool fp8 = v.dtype == SafetensorsDType::F8_E4M3;
    const qwen3vl_dtype stored = fp8 ? QWEN3VL_DTYPE_F32 : weight_dtype(v);  // FP8 converts like f32 data
    std::vector<int64_t> shape = v.shape.empty() ? std::vector<int64_t>{1} : v.shape;
    if (shape.size() > QWEN3VL_MAX_DIMS) {
        // Conv3d patch-embedding weights are 5-D; their trailing dimensions are one contiguous row.
        int64_t tail = 1;
        for (size_t i = 1; i < shape.size(); ++i) tail *= shape[i];
        shape = {shape[0], tail};
    }
    if (fp8 && dtype == QWEN3VL_DTYPE_Q4)
        fail(QWEN3VL_STATUS_UNSUPPORTED,
             "weight " + name + " is FP8 (an -FP8 checkpoint): re-quantizing it to q4 would compound two roundings; "
             "load it as stored (q8) or quantize the original bf16 checkpoint to q4");
    if (dtype != stored) {
        const int64_t block = dtype == QWEN3VL_DTYPE_Q4 ? kQ4Super : kQ8Block;
        const bool ok = (dtype_is_float(dtype) && dtype_is_float(stored)) ||
                        (dtype_is_block(dtype) && dtype_is_float(stored) && shape.size() == 2 && shape[1] % block == 0);
        if (!ok)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
                 "weight " + name + " (" + (fp8 ? "f8_e4m3" : dtype_name(stored)) + ", " + std::to_string(shape.size()) +
                     "-D, last dimension " + std::to_string(shape.back()) + ") cannot be loaded as " +
                     dtype_name(dtype) +
                     (dtype_is_block(dtype) ? " (a 2-D float weight with rows of whole blocks of " +
                                                  std::to_string(block) + ")"
                                            : ""));
    }
    Tensor t;
    if (fp8) {
        t = make_tensor(b, dtype, static_cast<int>(shape.size()), shape.data(), /*persistent=*/true);
        load_fp8(t, *checkpoint, v);
    } else if (b.host_memory() && dtype == stored) {
        t.backend = &b;
        t.dtype = dtype;
        t.ndim = static_cast<int>(shape.size());
        for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
        t.data = const_cast<uint8_t*>(v.data);  // read-only by contract: weights are never op outputs
        t.bytes = v.bytes;
        t.storage = checkpoint;  // keeps the mapping alive
    } else {
        t = make_tensor(b, dtype, static_cast<int>(shape.size()), shape.data(), /*persistent=*/true);
        write_tensor(t, stored, v.data);
    }
    return t;
}


}  // namespace qwen3vl
