// Helpers shared by the op-family suites, tests/native/ops/test_<family>.cpp (one per family of native/core/ops.h).
// Each suite tests its family's ops three ways, under three kinds of test suite:
//  - <Family>Ops: the CPU kernels (engine internals, every kernel set this CPU has) against double references
//    (reference_util.h) on fresh random inputs, outputs poisoned with NaN;
//  - <Family>OpsCApi: the C API on a CPU backend, through the shared library's exported functions: every argument
//    error answers INVALID_ARGUMENT with a message naming the op and the tensor, and the ops run end to end;
//  - Cuda<Family>Ops: each op on the CUDA backend against the CPU backend through the C API (CudaOpsTest below); each
//    case SKIPs where the machine has no CUDA device, and CTest registers these suites only in CUDA builds (the
//    other builds compile them, so they stay in step with the C API, but do not list them).
// Here: fresh random inputs (the seed is printed with every failure; QWEN3VL_TEST_SEED reruns one), weights stored in
// a dtype at a chosen misalignment, the CPU kernel sets and thread pool, C API tensors (NaN-poisoned outputs, views,
// reads, the INVALID_ARGUMENT check) and the two C API fixtures.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "capi_handles.h"
#include "cpu_features.h"
#include "dtype.h"
#include "op_calls.h"
#include "quant.h"
#include "qwen3vl.h"
#include "reference_util.h"
#include "thread_pool.h"
#include "weight.h"

namespace qwen3vl {
namespace testing {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr qwen3vl_dtype kF32 = QWEN3VL_DTYPE_F32, kF16 = QWEN3VL_DTYPE_F16, kBF16 = QWEN3VL_DTYPE_BF16;
const qwen3vl_dtype kWeightDtypes[] = {QWEN3VL_DTYPE_BF16, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_F32};

// ---- Random inputs ----------------------------------------------------------------------------------------------

inline uint32_t fresh_seed() {
    if (const char* s = std::getenv("QWEN3VL_TEST_SEED")) return uint32_t(std::strtoul(s, nullptr, 10));
    return std::random_device{}();
}

struct Rng {
    explicit Rng(uint32_t s = fresh_seed()) : seed(s), gen(s) {}
    float uniform(float lo = -1.0f, float hi = 1.0f) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
    int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
    std::vector<float> vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
        std::vector<float> v(n);
        for (float& x : v) x = uniform(lo, hi);
        return v;
    }
    // For SCOPED_TRACE and failure messages.
    std::string trace() const { return "seed " + std::to_string(seed) + " (rerun with QWEN3VL_TEST_SEED)"; }

    uint32_t seed;
    std::mt19937 gen;
};

// A matrix or vector in a weight dtype at a chosen byte misalignment, and the f32 values it really holds (after the
// rounding to bf16 / f16), for the references.
struct Stored {
    std::vector<uint8_t> bytes;
    size_t offset = 0;
    qwen3vl_dtype dtype = QWEN3VL_DTYPE_F32;
    std::vector<float> values;
    const void* data() const { return bytes.data() + offset; }
    Weight view() const { return {data(), dtype}; }
};

inline Stored make_stored(Rng& rng, qwen3vl_dtype dtype, size_t count, size_t misalign = 0, float lo = -1.0f,
                          float hi = 1.0f) {
    Stored s;
    s.dtype = dtype;
    s.offset = misalign;
    s.bytes.assign(count * dtype_size(dtype) + misalign, 0);
    s.values.resize(count);
    for (size_t i = 0; i < count; ++i) {
        const float f = rng.uniform(lo, hi);
        uint8_t* p = s.bytes.data() + misalign + i * dtype_size(dtype);
        if (dtype == QWEN3VL_DTYPE_F32) {
            std::memcpy(p, &f, 4);
            s.values[i] = f;
        } else {
            const uint16_t h = dtype == QWEN3VL_DTYPE_BF16 ? f32_to_bf16(f) : f32_to_f16(f);
            std::memcpy(p, &h, 2);
            s.values[i] = dtype == QWEN3VL_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
    }
    return s;
}

// ---- CPU kernels ------------------------------------------------------------------------------------------------

// Scalar always, AVX2 where this CPU has it.
inline std::vector<CpuKernels> kernel_sets() {
    std::vector<CpuKernels> k{CpuKernels::Scalar};
    const uint32_t avx2 = QWEN3VL_CPU_AVX2 | QWEN3VL_CPU_FMA | QWEN3VL_CPU_F16C;
    if ((detect_cpu_features() & avx2) == avx2) k.push_back(CpuKernels::Avx2);
    return k;
}

inline ThreadPool& pool() {
    static ThreadPool p(3);  // more threads than a 2-core machine has: the splitting is exercised everywhere
    return p;
}

// ---- C API tensors on a CPU backend -----------------------------------------------------------------------------

inline size_t element_count(const std::vector<int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), size_t(1),
                           [](size_t a, int64_t b) { return a * static_cast<size_t>(b); });
}

// threads 0: the default (one per logical processor).
inline BackendPtr cpu_backend(int32_t threads = 0) {
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    if (threads != 0) p.threads = threads;
    qwen3vl_backend* b = nullptr;
    EXPECT_EQ(qwen3vl_backend_create(&p, &b), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    return BackendPtr(b);
}

// data (f32, converted to dtype) is written when given.
inline TensorPtr tensor(qwen3vl_backend* b, qwen3vl_dtype dtype, std::vector<int64_t> shape,
                        const std::vector<float>& data = {}) {
    qwen3vl_tensor* t = nullptr;
    EXPECT_EQ(qwen3vl_tensor_create(b, dtype, int32_t(shape.size()), shape.data(), &t), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    if (!data.empty())
        EXPECT_EQ(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, data.data(), data.size() * 4), QWEN3VL_STATUS_OK)
            << qwen3vl_last_error();
    return TensorPtr(t);
}

inline TensorPtr int_tensor(qwen3vl_backend* b, std::vector<int64_t> shape, const std::vector<int32_t>& data) {
    qwen3vl_tensor* t = nullptr;
    EXPECT_EQ(qwen3vl_tensor_create(b, QWEN3VL_DTYPE_I32, int32_t(shape.size()), shape.data(), &t), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    EXPECT_EQ(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_I32, data.data(), data.size() * 4), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    return TensorPtr(t);
}

inline TensorPtr rand_tensor(qwen3vl_backend* b, Rng& rng, qwen3vl_dtype dt, std::vector<int64_t> shape) {
    const size_t n = element_count(shape);
    return tensor(b, dt, std::move(shape), rng.vec(n));
}

// An f32 output poisoned with NaN: an element the op does not write fails every check.
inline TensorPtr nan_tensor(qwen3vl_backend* b, std::vector<int64_t> shape) {
    const size_t n = element_count(shape);
    return tensor(b, QWEN3VL_DTYPE_F32, std::move(shape), std::vector<float>(n, kNaN));
}

// A view of base (elements offset .. offset + the shape's count).
inline TensorPtr view_of(qwen3vl_tensor* base, int64_t offset, std::vector<int64_t> shape) {
    qwen3vl_tensor* v = nullptr;
    EXPECT_EQ(qwen3vl_tensor_view(base, offset, int32_t(shape.size()), shape.data(), &v), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    return TensorPtr(v);
}

// The whole tensor, as f32 or as i32.
// A KV cache's values as the raw planes of a Q8 cache (int8 values, then f16 scales), quantized as the ops that write
// cache rows do (quantize_kv_q8): a block holding NaN gets a NaN scale, so rows the tests poison with NaN stay NaN.
inline std::vector<uint8_t> kv_q8_planes(const std::vector<float>& v) {
    std::vector<uint8_t> raw(v.size() + v.size() / 16);
    qwen3vl::quantize_kv_q8(v.data(), int64_t(v.size()), reinterpret_cast<int8_t*>(raw.data()),
                            reinterpret_cast<uint16_t*>(raw.data() + v.size()));
    return raw;
}

// f32 values into a tensor: converted to its dtype, or for a Q8 tensor (a KV cache in these tests) written as the
// planes kv_q8_planes makes.
inline void write_values(qwen3vl_tensor* t, const std::vector<float>& v) {
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    ASSERT_EQ(qwen3vl_tensor_describe(t, &d), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    if (d.dtype == QWEN3VL_DTYPE_Q8) {
        const std::vector<uint8_t> raw = kv_q8_planes(v);
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_write(t, QWEN3VL_DTYPE_Q8, raw.data(), raw.size()))
            << qwen3vl_last_error();
        return;
    }
    ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4))
        << qwen3vl_last_error();
}

inline std::vector<float> read(const qwen3vl_tensor* t) {
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    EXPECT_EQ(qwen3vl_tensor_describe(t, &d), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    size_t n = 1;  // elements (a block-quantized tensor's bytes hold its scales too)
    for (int i = 0; i < d.ndim; ++i) n *= size_t(d.shape[i]);
    std::vector<float> v(n);
    EXPECT_EQ(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    return v;
}

inline std::vector<int32_t> read_i32(const qwen3vl_tensor* t) {
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    EXPECT_EQ(qwen3vl_tensor_describe(t, &d), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    std::vector<int32_t> v(size_t(d.bytes / 4));
    EXPECT_EQ(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_I32, v.data(), v.size() * 4), QWEN3VL_STATUS_OK)
        << qwen3vl_last_error();
    return v;
}

// INVALID_ARGUMENT with a last error that contains fragment (the op's and the tensor's names).
inline ::testing::AssertionResult invalid_argument(qwen3vl_status s, const std::string& fragment) {
    const std::string message = qwen3vl_last_error();
    if (s != QWEN3VL_STATUS_INVALID_ARGUMENT)
        return ::testing::AssertionFailure() << "status " << qwen3vl_status_name(s)
                                             << ", expected INVALID_ARGUMENT (message: " << message << ")";
    if (message.find(fragment) == std::string::npos)
        return ::testing::AssertionFailure() << "message: " << message << "\nexpected to contain: " << fragment;
    return ::testing::AssertionSuccess();
}

#define EXPECT_INVALID(call, text) EXPECT_TRUE(::qwen3vl::testing::invalid_argument((call), (text)))

// A CPU backend (2 threads) whose tensors live as long as the test: the argument checks create many.
class CApiOpTest : public ::testing::Test {
protected:
    void SetUp() override {
        backend = cpu_backend(2);
        ASSERT_TRUE(backend);
    }
    void TearDown() override {
        tensors.clear();
        backend.reset();
    }

    qwen3vl_tensor* keep(TensorPtr t) {
        tensors.push_back(std::move(t));
        return tensors.back().get();
    }
    qwen3vl_tensor* make(qwen3vl_dtype dtype, std::vector<int64_t> shape) {
        return keep(tensor(backend.get(), dtype, std::move(shape)));
    }
    qwen3vl_tensor* f32(std::vector<int64_t> shape, const std::vector<float>& data) {
        return keep(tensor(backend.get(), QWEN3VL_DTYPE_F32, std::move(shape), data));
    }
    qwen3vl_tensor* f32(std::vector<int64_t> shape, float fill = 0.5f) {
        const size_t n = element_count(shape);
        return f32(std::move(shape), std::vector<float>(n, fill));
    }
    qwen3vl_tensor* i32(std::vector<int64_t> shape, const std::vector<int32_t>& data) {
        return keep(int_tensor(backend.get(), std::move(shape), data));
    }
    qwen3vl_tensor* view(qwen3vl_tensor* t, int64_t offset, std::vector<int64_t> shape) {
        return keep(view_of(t, offset, std::move(shape)));
    }

    BackendPtr backend;
    std::vector<TensorPtr> tensors;
};

// ---- CUDA against the CPU ---------------------------------------------------------------------------------------

// One tensor on each backend.
struct Pair {
    qwen3vl_tensor* cpu = nullptr;
    qwen3vl_tensor* gpu = nullptr;
};

// Runs an op of the C API on the CUDA backend and on the CPU backend (the dispatch in capi/ops_*.cpp included) on the
// same fresh random inputs in [-1, 1]; outputs are poisoned with NaN before the op so unwritten elements show.
// Agreement is NMSE = sum (gpu - cpu)^2 / sum cpu^2 (each family's suite says its thresholds and why). Each case
// SKIPs with a message when the machine has no CUDA device.
class CudaOpsTest : public ::testing::Test {
protected:
    void SetUp() override {
        int32_t n = 0;
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_cuda_device_count(&n)) << qwen3vl_last_error();
        if (n == 0) GTEST_SKIP() << "no CUDA device on this machine";
        qwen3vl_cuda_device dev = qwen3vl_cuda_device_init();
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_cuda_device_get(0, &dev)) << qwen3vl_last_error();
        cc_ = dev.compute_major * 10 + dev.compute_minor;
        qwen3vl_backend_params p = qwen3vl_backend_default_params();
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_backend_create(&p, &cpu_)) << qwen3vl_last_error();
        p.type = QWEN3VL_BACKEND_CUDA;
        p.device = 0;
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_backend_create(&p, &gpu_)) << qwen3vl_last_error();
    }

    void TearDown() override {
        for (auto it = owned_.rbegin(); it != owned_.rend(); ++it) qwen3vl_tensor_free(*it);
        qwen3vl_backend_free(gpu_);
        qwen3vl_backend_free(cpu_);
    }

    static void check(qwen3vl_status st, const char* what) {
        if (st != QWEN3VL_STATUS_OK)
            throw std::runtime_error(std::string(what) + ": " + qwen3vl_status_name(st) + ": " + qwen3vl_last_error());
    }

    std::string seed() const { return rng_.trace(); }

    std::vector<float> random(size_t n, float lo = -1.0f, float hi = 1.0f) { return rng_.vec(n, lo, hi); }
    int32_t randint(int32_t lo, int32_t hi) { return rng_.integer(lo, hi); }

    qwen3vl_tensor* create(qwen3vl_backend* be, qwen3vl_dtype dt, const std::vector<int64_t>& shape) {
        qwen3vl_tensor* t = nullptr;
        check(qwen3vl_tensor_create(be, dt, static_cast<int32_t>(shape.size()), shape.data(), &t), "tensor_create");
        owned_.push_back(t);
        return t;
    }

    // The same values (written as f32, converted to dt) on both backends; no values: NaN poison (f32 only).
    Pair tensor(qwen3vl_dtype dt, const std::vector<int64_t>& shape, std::vector<float> values = {}) {
        if (values.empty()) values.assign(element_count(shape), kNaN);
        Pair p{create(cpu_, dt, shape), create(gpu_, dt, shape)};
        write_both(p, values);
        return p;
    }
    void write_both(const Pair& p, const std::vector<float>& v) {
        for (qwen3vl_tensor* t : {p.cpu, p.gpu}) write_values(t, v);
    }
    Pair rand_tensor(qwen3vl_dtype dt, const std::vector<int64_t>& shape) {
        return tensor(dt, shape, random(element_count(shape)));
    }
    Pair ints(const std::vector<int64_t>& shape, const std::vector<int32_t>& values) {
        Pair p{create(cpu_, QWEN3VL_DTYPE_I32, shape), create(gpu_, QWEN3VL_DTYPE_I32, shape)};
        for (qwen3vl_tensor* t : {p.cpu, p.gpu})
            check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_I32, values.data(), values.size() * 4), "tensor_write");
        return p;
    }
    Pair view(const Pair& base, int64_t offset, const std::vector<int64_t>& shape) {
        Pair p;
        check(qwen3vl_tensor_view(base.cpu, offset, int32_t(shape.size()), shape.data(), &p.cpu), "tensor_view");
        owned_.push_back(p.cpu);
        check(qwen3vl_tensor_view(base.gpu, offset, int32_t(shape.size()), shape.data(), &p.gpu), "tensor_view");
        owned_.push_back(p.gpu);
        return p;
    }

    void expect_close(const Pair& p, double threshold, const std::string& what) {
        const std::vector<float> ref = read(p.cpu), got = read(p.gpu);
        ASSERT_EQ(ref.size(), got.size());
        const double e = nmse(got, ref);  // infinite when the GPU left a poisoned element
        EXPECT_LE(e, threshold) << what << " (" << seed() << ")";
    }
    void expect_equal(const Pair& p, const std::string& what) {
        EXPECT_EQ(read(p.cpu), read(p.gpu)) << what << " (" << seed() << ")";
    }

    // Runs op on the CPU and on the GPU tensors of the pairs (picked by the flag), both must succeed.
    template <class Op>
    void both(const char* name, Op op) {
        check(op(true), (std::string(name) + " on the CPU").c_str());
        check(op(false), (std::string(name) + " on CUDA").c_str());
    }
    static qwen3vl_tensor* on(const Pair& p, bool cpu) { return cpu ? p.cpu : p.gpu; }

    int cc_ = 0;
    Rng rng_;
    qwen3vl_backend* cpu_ = nullptr;
    qwen3vl_backend* gpu_ = nullptr;
    std::vector<qwen3vl_tensor*> owned_;
};

}  // namespace testing
}  // namespace qwen3vl
