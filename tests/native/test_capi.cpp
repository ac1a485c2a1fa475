// The exported C API, exercised through the shared library as a user would: statuses, last-error text, build
// info, backends, tensors and pool counters.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "capi_handles.h"
#include "qwen3vl.h"
#include "safetensors_test_util.h"

#if !defined(_WIN32)
#  include <sys/stat.h>  // mkfifo, for the FIFO cases
#endif

namespace {

std::string last_error() { return qwen3vl_last_error(); }

BackendPtr make_cpu_backend() {
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    qwen3vl_backend* b = nullptr;
    EXPECT_EQ(qwen3vl_backend_create(&p, &b), QWEN3VL_STATUS_OK) << last_error();
    return BackendPtr(b);
}

TEST(CApiStatus, NamesAreDistinctAndStable) {
    EXPECT_STREQ(qwen3vl_status_name(QWEN3VL_STATUS_OK), "QWEN3VL_STATUS_OK");
    EXPECT_STREQ(qwen3vl_status_name(QWEN3VL_STATUS_BAD_FORMAT), "QWEN3VL_STATUS_BAD_FORMAT");
    EXPECT_STREQ(qwen3vl_status_name(QWEN3VL_STATUS_INTERNAL_ERROR), "QWEN3VL_STATUS_INTERNAL_ERROR");
    EXPECT_STREQ(qwen3vl_status_name(QWEN3VL_STATUS_NUMERICAL_ERROR), "QWEN3VL_STATUS_NUMERICAL_ERROR");
    EXPECT_STREQ(qwen3vl_status_name(static_cast<qwen3vl_status>(1234)), "QWEN3VL_STATUS_UNKNOWN");
}

TEST(CApiStatus, NullArgumentsAreInvalidWithAMessage) {
    EXPECT_EQ(qwen3vl_build_info_get(nullptr), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("qwen3vl_build_info pointer is NULL"), std::string::npos) << last_error();
    EXPECT_EQ(qwen3vl_cuda_device_count(nullptr), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("count is NULL"), std::string::npos) << last_error();
    EXPECT_EQ(qwen3vl_backend_create(nullptr, nullptr), QWEN3VL_STATUS_INVALID_ARGUMENT);
}

TEST(CApiStatus, StructSizeIsChecked) {
    qwen3vl_build_info info = qwen3vl_build_info_init();
    info.struct_size = 12;
    EXPECT_EQ(qwen3vl_build_info_get(&info), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("struct_size is 12"), std::string::npos) << last_error();
}

TEST(CApiStatus, LastErrorIsPerThread) {
    EXPECT_EQ(qwen3vl_build_info_get(nullptr), QWEN3VL_STATUS_INVALID_ARGUMENT);
    const std::string here = last_error();
    std::string there = "unset";
    std::thread([&] { there = qwen3vl_last_error(); }).join();
    EXPECT_FALSE(here.empty());
    EXPECT_EQ(there, "");
}

TEST(CApiBuildInfo, ReportsVersionBackendsAndCpu) {
    qwen3vl_build_info info = qwen3vl_build_info_init();
    ASSERT_EQ(qwen3vl_build_info_get(&info), QWEN3VL_STATUS_OK) << last_error();
    EXPECT_EQ(info.version_major, QWEN3VL_VERSION_MAJOR);
    EXPECT_EQ(info.version_minor, QWEN3VL_VERSION_MINOR);
    EXPECT_EQ(info.version_patch, QWEN3VL_VERSION_PATCH);
    const std::string version = std::to_string(QWEN3VL_VERSION_MAJOR) + "." + std::to_string(QWEN3VL_VERSION_MINOR) +
                                "." + std::to_string(QWEN3VL_VERSION_PATCH);
    EXPECT_EQ(std::string(info.version), version);
    EXPECT_TRUE(info.backends & QWEN3VL_BACKEND_FLAG_CPU);
    EXPECT_GE(info.logical_cpus, 1);
    EXPECT_FALSE(std::string(info.compiler).empty());
    const std::string kernels = info.cpu_kernels;
    EXPECT_TRUE(kernels == "avx2" || kernels == "scalar") << kernels;
    const uint32_t avx2_set = QWEN3VL_CPU_AVX2 | QWEN3VL_CPU_FMA | QWEN3VL_CPU_F16C;
    if ((info.cpu_features & avx2_set) != avx2_set) EXPECT_EQ(kernels, "scalar");
    if (info.backends & QWEN3VL_BACKEND_FLAG_CUDA) {
        EXPECT_GT(info.cuda_runtime_version, 0);
        EXPECT_FALSE(std::string(info.cuda_architectures).empty());
    } else {
        EXPECT_EQ(info.cuda_runtime_version, 0);
        EXPECT_EQ(info.cuda_device_count, 0);
    }
}

TEST(CApiCuda, DeviceQueriesMatchTheBuild) {
    qwen3vl_build_info info = qwen3vl_build_info_init();
    ASSERT_EQ(qwen3vl_build_info_get(&info), QWEN3VL_STATUS_OK);
    int32_t count = -1;
    ASSERT_EQ(qwen3vl_cuda_device_count(&count), QWEN3VL_STATUS_OK);
    EXPECT_EQ(count, info.cuda_device_count);
    qwen3vl_cuda_device dev = qwen3vl_cuda_device_init();
    if (!(info.backends & QWEN3VL_BACKEND_FLAG_CUDA)) {
        EXPECT_EQ(count, 0);
        EXPECT_EQ(qwen3vl_cuda_device_get(0, &dev), QWEN3VL_STATUS_UNSUPPORTED);
        EXPECT_NE(last_error().find("no CUDA support"), std::string::npos) << last_error();
        return;
    }
    EXPECT_EQ(qwen3vl_cuda_device_get(-1, &dev), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(qwen3vl_cuda_device_get(count, &dev), QWEN3VL_STATUS_INVALID_ARGUMENT);
    for (int i = 0; i < count; ++i) {
        ASSERT_EQ(qwen3vl_cuda_device_get(i, &dev), QWEN3VL_STATUS_OK) << last_error();
        EXPECT_EQ(dev.index, i);
        EXPECT_GE(dev.compute_major, 3);
        EXPECT_GT(dev.total_memory, 0u);
        EXPECT_LE(dev.free_memory, dev.total_memory);
        EXPECT_GT(dev.multiprocessors, 0);
        EXPECT_GT(std::strlen(dev.name), 0u);
    }
}

TEST(CApiBackend, CpuBackendHasAName) {
    BackendPtr b = make_cpu_backend();
    ASSERT_TRUE(b);
    char name[128];
    ASSERT_EQ(qwen3vl_backend_name(b.get(), name, sizeof(name)), QWEN3VL_STATUS_OK) << last_error();
    EXPECT_EQ(std::string(name).rfind("cpu (", 0), 0u) << name;
    char tiny[3];
    EXPECT_EQ(qwen3vl_backend_name(b.get(), tiny, sizeof(tiny)), QWEN3VL_STATUS_LIMIT_EXCEEDED);
}

TEST(CApiBackend, InvalidParamsAreRejected) {
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    qwen3vl_backend* b = reinterpret_cast<qwen3vl_backend*>(0x1);
    p.type = static_cast<qwen3vl_backend_type>(7);
    EXPECT_EQ(qwen3vl_backend_create(&p, &b), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(b, nullptr);  // out-pointer cleared on failure
    p = qwen3vl_backend_default_params();
    p.threads = -2;
    EXPECT_EQ(qwen3vl_backend_create(&p, &b), QWEN3VL_STATUS_INVALID_ARGUMENT);
}

TEST(CApiBackend, CudaBackendWithoutDeviceIsAnErrorNotACrash) {
    int32_t count = 0;
    ASSERT_EQ(qwen3vl_cuda_device_count(&count), QWEN3VL_STATUS_OK);
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    p.type = QWEN3VL_BACKEND_CUDA;
    p.device = count;  // one past the last device
    qwen3vl_backend* b = nullptr;
    const qwen3vl_status s = qwen3vl_backend_create(&p, &b);
    EXPECT_TRUE(s == QWEN3VL_STATUS_UNSUPPORTED || s == QWEN3VL_STATUS_INVALID_ARGUMENT) << qwen3vl_status_name(s);
    EXPECT_EQ(b, nullptr);
    EXPECT_FALSE(last_error().empty());
}

TEST(CApiTensor, CreateDescribeAndBadShapes) {
    BackendPtr b = make_cpu_backend();
    const int64_t shape[3] = {2, 3, 5};
    qwen3vl_tensor* raw = nullptr;
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_BF16, 3, shape, &raw), QWEN3VL_STATUS_OK) << last_error();
    TensorPtr t(raw);
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    ASSERT_EQ(qwen3vl_tensor_describe(t.get(), &d), QWEN3VL_STATUS_OK);
    EXPECT_EQ(d.dtype, QWEN3VL_DTYPE_BF16);
    EXPECT_EQ(d.ndim, 3);
    EXPECT_EQ(d.shape[0], 2);
    EXPECT_EQ(d.shape[2], 5);
    EXPECT_EQ(d.bytes, 60u);

    const int64_t negative[2] = {4, -1};
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, negative, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("negative"), std::string::npos) << last_error();
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 0, shape, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 5, shape, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    const int64_t overflow[2] = {int64_t(1) << 40, int64_t(1) << 40};
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, overflow, &raw), QWEN3VL_STATUS_LIMIT_EXCEEDED);
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), static_cast<qwen3vl_dtype>(99), 1, shape, &raw),
              QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(raw, nullptr);
}

TEST(CApiTensor, HugeAllocationIsOutOfMemoryAndTheBackendStaysUsable) {
    BackendPtr b = make_cpu_backend();
    const int64_t huge[2] = {int64_t(1) << 30, int64_t(1) << 24};  // 2^54 floats = 64 PiB
    qwen3vl_tensor* raw = nullptr;
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, huge, &raw), QWEN3VL_STATUS_OUT_OF_MEMORY);
    EXPECT_NE(last_error().find("out of memory on cpu"), std::string::npos) << last_error();
    const int64_t small[1] = {16};
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 1, small, &raw), QWEN3VL_STATUS_OK);
    qwen3vl_tensor_free(raw);
}

TEST(CApiTensor, WriteReadRoundTripsWithConversion) {
    BackendPtr b = make_cpu_backend();
    std::mt19937 rng(std::random_device{}());
    std::uniform_real_distribution<float> dist(-4.f, 4.f);
    const int64_t shape[2] = {7, 13};  // odd sizes exercise the vector tails
    const size_t n = 7 * 13;
    std::vector<float> src(n);
    for (float& v : src) v = dist(rng);

    for (qwen3vl_dtype storage : {QWEN3VL_DTYPE_F32, QWEN3VL_DTYPE_F16, QWEN3VL_DTYPE_BF16}) {
        qwen3vl_tensor* raw = nullptr;
        ASSERT_EQ(qwen3vl_tensor_create(b.get(), storage, 2, shape, &raw), QWEN3VL_STATUS_OK);
        TensorPtr t(raw);
        ASSERT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, src.data(), n * 4), QWEN3VL_STATUS_OK)
            << last_error();
        std::vector<float> back(n, std::nanf(""));
        ASSERT_EQ(qwen3vl_tensor_read(t.get(), QWEN3VL_DTYPE_F32, back.data(), n * 4), QWEN3VL_STATUS_OK);
        // Relative rounding bound of the storage type: 2^-24 (f32), 2^-11 (f16), 2^-8 (bf16).
        const float rel = storage == QWEN3VL_DTYPE_F32 ? 0.f : storage == QWEN3VL_DTYPE_F16 ? 1.f / 2048 : 1.f / 256;
        for (size_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(back[i] - src[i]), rel * std::fabs(src[i]) + 1e-7f) << "i=" << i << " dtype=" << storage;
    }
}

TEST(CApiTensor, WriteChecksTheByteCountAndDtypePair) {
    BackendPtr b = make_cpu_backend();
    const int64_t shape[1] = {10};
    qwen3vl_tensor* raw = nullptr;
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 1, shape, &raw), QWEN3VL_STATUS_OK);
    TensorPtr t(raw);
    std::vector<float> buf(10);
    EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, buf.data(), 39), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("needs 40 bytes"), std::string::npos) << last_error();
    EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_I32, buf.data(), 40), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("cannot convert i32 to f32"), std::string::npos) << last_error();
    EXPECT_EQ(qwen3vl_tensor_read(t.get(), QWEN3VL_DTYPE_F32, nullptr, 40), QWEN3VL_STATUS_INVALID_ARGUMENT);
}

TEST(CApiMemory, PoolReusesBlocksWithoutSystemCalls) {
    BackendPtr b = make_cpu_backend();
    const int64_t shape[2] = {64, 1000};
    qwen3vl_memory_stats before = qwen3vl_memory_stats_init();
    qwen3vl_memory_stats after = qwen3vl_memory_stats_init();
    for (int i = 0; i < 3; ++i) {  // warm-up: the first round may allocate
        qwen3vl_tensor* raw = nullptr;
        ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, shape, &raw), QWEN3VL_STATUS_OK);
        qwen3vl_tensor_free(raw);
    }
    ASSERT_EQ(qwen3vl_backend_memory_stats(b.get(), &before), QWEN3VL_STATUS_OK);
    for (int i = 0; i < 100; ++i) {
        qwen3vl_tensor* raw = nullptr;
        ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, shape, &raw), QWEN3VL_STATUS_OK);
        qwen3vl_tensor_free(raw);
    }
    ASSERT_EQ(qwen3vl_backend_memory_stats(b.get(), &after), QWEN3VL_STATUS_OK);
    EXPECT_EQ(after.system_allocations, before.system_allocations);
    EXPECT_EQ(after.pool_allocations, before.pool_allocations + 100);
    EXPECT_EQ(after.bytes_in_use, 0u);
    EXPECT_GE(after.peak_bytes_in_use, 64u * 1000u * 4u);
    ASSERT_EQ(qwen3vl_backend_trim(b.get()), QWEN3VL_STATUS_OK);
    ASSERT_EQ(qwen3vl_backend_memory_stats(b.get(), &after), QWEN3VL_STATUS_OK);
    EXPECT_EQ(after.bytes_reserved, 0u);
    EXPECT_EQ(after.system_frees, after.system_allocations);
}

TEST(CApiMemory, ResetPeakStartsANewHighWaterMark) {
    // A phase's peak: after a large tensor is freed, reset_peak brings the peak down to what is in use, and the next
    // reading is the peak of the work in between (a smaller tensor), not the earlier one.
    BackendPtr b = make_cpu_backend();
    const int64_t big[2] = {256, 1024}, small[2] = {16, 1024};
    qwen3vl_tensor* kept = nullptr;
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, small, &kept), QWEN3VL_STATUS_OK);
    TensorPtr keep(kept);
    qwen3vl_tensor* raw = nullptr;
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, big, &raw), QWEN3VL_STATUS_OK);
    qwen3vl_tensor_free(raw);
    qwen3vl_memory_stats s = qwen3vl_memory_stats_init();
    ASSERT_EQ(qwen3vl_backend_memory_stats(b.get(), &s), QWEN3VL_STATUS_OK);
    const uint64_t in_use = s.bytes_in_use;
    EXPECT_GE(s.peak_bytes_in_use, in_use + 256u * 1024u * 4u);
    ASSERT_EQ(qwen3vl_backend_reset_peak(b.get()), QWEN3VL_STATUS_OK);
    ASSERT_EQ(qwen3vl_backend_memory_stats(b.get(), &s), QWEN3VL_STATUS_OK);
    EXPECT_EQ(s.peak_bytes_in_use, in_use);
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, small, &raw), QWEN3VL_STATUS_OK);
    qwen3vl_tensor_free(raw);
    ASSERT_EQ(qwen3vl_backend_memory_stats(b.get(), &s), QWEN3VL_STATUS_OK);
    EXPECT_EQ(s.peak_bytes_in_use, 2 * in_use);  // the kept tensor and one more of its size
    EXPECT_EQ(qwen3vl_backend_reset_peak(nullptr), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("backend is NULL"), std::string::npos) << last_error();
}

TEST(CApiAbi, LayoutQueriesAnswerForKnownNamesOnly) {
    int64_t v = 0;
    ASSERT_EQ(qwen3vl_abi_layout("qwen3vl_build_info", nullptr, &v), QWEN3VL_STATUS_OK);
    EXPECT_EQ(v, static_cast<int64_t>(sizeof(qwen3vl_build_info)));
    ASSERT_EQ(qwen3vl_abi_layout("qwen3vl_tensor_desc", "shape", &v), QWEN3VL_STATUS_OK);
    EXPECT_EQ(v, static_cast<int64_t>(offsetof(qwen3vl_tensor_desc, shape)));
    ASSERT_EQ(qwen3vl_abi_layout("qwen3vl_status", "QWEN3VL_STATUS_BAD_FORMAT", &v), QWEN3VL_STATUS_OK);
    EXPECT_EQ(v, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_EQ(qwen3vl_abi_layout("qwen3vl_nothing", nullptr, &v), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(qwen3vl_abi_layout("qwen3vl_build_info", "no_such_field", &v), QWEN3VL_STATUS_INVALID_ARGUMENT);
}

}  // namespace

namespace {

std::string fixture_model(const char* name) { return std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/" + name + "/model"; }

TEST(CApiCheckpoint, OpensAFixtureAndReportsItsConfig) {
    qwen3vl_checkpoint* ck = nullptr;
    ASSERT_EQ(qwen3vl_checkpoint_open(fixture_model("tiny-tied").c_str(), &ck), QWEN3VL_STATUS_OK) << last_error();
    qwen3vl_model_config c = qwen3vl_model_config_init();
    ASSERT_EQ(qwen3vl_checkpoint_config(ck, &c), QWEN3VL_STATUS_OK) << last_error();
    EXPECT_EQ(c.vocab_size, 151936);
    EXPECT_EQ(c.tie_word_embeddings, 1);
    EXPECT_EQ(c.mrope_section[0] + c.mrope_section[1] + c.mrope_section[2], c.text_head_dim / 2);
    EXPECT_GE(c.eos_token_count, 1);

    BackendPtr b = make_cpu_backend();
    qwen3vl_tensor* w = nullptr;
    ASSERT_EQ(qwen3vl_checkpoint_tensor(ck, b.get(), "model.language_model.embed_tokens.weight", &w), QWEN3VL_STATUS_OK)
        << last_error();
    qwen3vl_checkpoint_free(ck);  // the tensor keeps the mapping alive
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    ASSERT_EQ(qwen3vl_tensor_describe(w, &d), QWEN3VL_STATUS_OK);
    EXPECT_EQ(d.dtype, QWEN3VL_DTYPE_BF16);
    EXPECT_EQ(d.shape[0], 151936);
    EXPECT_EQ(d.shape[1], c.text_hidden_size);
    std::vector<float> row(static_cast<size_t>(d.shape[0] * d.shape[1]));
    ASSERT_EQ(qwen3vl_tensor_read(w, QWEN3VL_DTYPE_F32, row.data(), row.size() * 4), QWEN3VL_STATUS_OK);
    double sum_sq = 0;
    for (float v : row) sum_sq += double(v) * v;
    EXPECT_GT(sum_sq, 0.0);
    qwen3vl_tensor_free(w);
}

TEST(CApiCheckpoint, MissingFolderAndMissingTensorAreClearErrors) {
    qwen3vl_checkpoint* ck = nullptr;
    EXPECT_EQ(qwen3vl_checkpoint_open("/nonexistent/qwen3vl", &ck), QWEN3VL_STATUS_IO_ERROR);
    EXPECT_NE(last_error().find("/nonexistent/qwen3vl"), std::string::npos) << last_error();
    EXPECT_EQ(ck, nullptr);
    ASSERT_EQ(qwen3vl_checkpoint_open(fixture_model("tiny-untied").c_str(), &ck), QWEN3VL_STATUS_OK) << last_error();
    BackendPtr b = make_cpu_backend();
    qwen3vl_tensor* w = nullptr;
    EXPECT_EQ(qwen3vl_checkpoint_tensor(ck, b.get(), "no.such.weight", &w), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("no.such.weight"), std::string::npos) << last_error();
    ASSERT_EQ(qwen3vl_checkpoint_tensor(ck, b.get(), "model.visual.patch_embed.proj.weight", &w), QWEN3VL_STATUS_OK);
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    ASSERT_EQ(qwen3vl_tensor_describe(w, &d), QWEN3VL_STATUS_OK);
    EXPECT_EQ(d.ndim, 2);  // Conv3d [hidden, 3, 2, 16, 16] flattened to [hidden, 1536]
    EXPECT_EQ(d.shape[1], 3 * 2 * 16 * 16);
    qwen3vl_tensor_free(w);
    qwen3vl_checkpoint_free(ck);
}

TEST(CApiTensor, ViewsShareMemoryAndCheckBounds) {
    BackendPtr b = make_cpu_backend();
    const int64_t shape[2] = {4, 6};
    qwen3vl_tensor* raw = nullptr;
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, shape, &raw), QWEN3VL_STATUS_OK);
    std::vector<float> data(24);
    for (size_t i = 0; i < data.size(); ++i) data[i] = float(i);
    ASSERT_EQ(qwen3vl_tensor_write(raw, QWEN3VL_DTYPE_F32, data.data(), 96), QWEN3VL_STATUS_OK);
    const int64_t vshape[2] = {2, 3};
    qwen3vl_tensor* view = nullptr;
    ASSERT_EQ(qwen3vl_tensor_view(raw, 6, 2, vshape, &view), QWEN3VL_STATUS_OK) << last_error();
    qwen3vl_tensor_free(raw);  // the view keeps the memory
    std::vector<float> got(6);
    ASSERT_EQ(qwen3vl_tensor_read(view, QWEN3VL_DTYPE_F32, got.data(), 24), QWEN3VL_STATUS_OK);
    EXPECT_EQ(got, (std::vector<float>{6, 7, 8, 9, 10, 11}));
    qwen3vl_tensor* bad = nullptr;
    EXPECT_EQ(qwen3vl_tensor_view(view, 1, 2, vshape, &bad), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(bad, nullptr);
    qwen3vl_tensor_free(view);
}

}  // namespace

// --- What a path names (issue 12: size caps that a special file defeats) --------------------------------------------

namespace {

qwen3vl_file_kind kind_of(const std::string& path) {
    qwen3vl_file_kind kind = QWEN3VL_FILE_KIND_OTHER;
    EXPECT_EQ(qwen3vl_path_kind(path.c_str(), &kind), QWEN3VL_STATUS_OK) << last_error();
    return kind;
}

#if defined(_WIN32)
const char* const kNullDevice = "NUL";
#else
const char* const kNullDevice = "/dev/null";
#endif

}  // namespace

TEST(CApiPath, KindsOfFileDirectoryDeviceAndNothing) {
    qwen3vl::testing::TempDir dir;
    std::ofstream(dir.file("a.json")) << "{}";
    EXPECT_EQ(kind_of(dir.file("a.json")), QWEN3VL_FILE_KIND_REGULAR);
    EXPECT_EQ(kind_of(dir.path().string()), QWEN3VL_FILE_KIND_DIRECTORY);
    EXPECT_EQ(kind_of(dir.file("missing")), QWEN3VL_FILE_KIND_NONE);
    EXPECT_EQ(kind_of(kNullDevice), QWEN3VL_FILE_KIND_OTHER);
    qwen3vl_file_kind kind;
    EXPECT_EQ(qwen3vl_path_kind(nullptr, &kind), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(qwen3vl_path_kind("x", nullptr), QWEN3VL_STATUS_INVALID_ARGUMENT);
}

#if !defined(_WIN32)
TEST(CApiPath, AFifoIsOtherAndACheckpointWithOneIsRefusedWithoutBlocking) {
    qwen3vl::testing::TempDir dir;
    ASSERT_EQ(mkfifo(dir.file("fifo").c_str(), 0600), 0);
    EXPECT_EQ(kind_of(dir.file("fifo")), QWEN3VL_FILE_KIND_OTHER);

    // A copy of the tiny checkpoint whose weights, then whose config, are a FIFO (opening one for reading would wait
    // for a writer forever) or a character device (length 0, endless content): refused by name (a
    // blocking open would hang here until CTest's timeout).
    const std::filesystem::path src = fixture_model("tiny-tied");
    for (const char* name : {"model.safetensors", "config.json"}) {
        for (bool fifo : {true, false}) {
            qwen3vl::testing::TempDir ck_dir;
            for (const auto& e : std::filesystem::directory_iterator(src))
                if (e.path().filename() != name) std::filesystem::copy(e.path(), ck_dir.path() / e.path().filename());
            const std::string special = ck_dir.file(name);
            if (fifo) ASSERT_EQ(mkfifo(special.c_str(), 0600), 0);
            else std::filesystem::create_symlink("/dev/zero", special);
            qwen3vl_checkpoint* ck = nullptr;
            EXPECT_EQ(qwen3vl_checkpoint_open(ck_dir.path().string().c_str(), &ck), QWEN3VL_STATUS_IO_ERROR) << name;
            EXPECT_NE(last_error().find("not a regular file"), std::string::npos) << last_error();
            EXPECT_NE(last_error().find(name), std::string::npos) << last_error();
            EXPECT_EQ(ck, nullptr);
            qwen3vl_checkpoint_free(ck);
        }
    }
}
#endif

// ---- Q8 tensors through the exported functions, on the CPU and (when there is a device) on CUDA: the quantization
// of tensor_write against an independent implementation of the format written here from its definition in
// qwen3vl.h (bit for bit: the rounding is specified), raw planes, dequantized reads, checkpoint loading, refusals.
namespace {

float f16_value(uint16_t h) {  // exact
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const float v = e == 0 ? std::ldexp(float(m), -24) : e == 31 ? INFINITY : std::ldexp(float(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

// The f16 nearest to v (ties to even), by search over the positive f16 values: slow, obviously right.
uint16_t f16_nearest(float v) {
    uint16_t best = 0;
    for (uint16_t h = 1; h < 0x7c00; ++h) {
        const double dh = std::fabs(double(f16_value(h)) - v), db = std::fabs(double(f16_value(best)) - v);
        if (dh < db || (dh == db && (h & 1) == 0)) best = h;
    }
    if (double(v) >= 65520.0) return 0x7c00;
    return best;
}

// qwen3vl.h: d = max|w| / 127 rounded to f16, q = round(w / d), clamped to +-127; zeros where d is 0.
void reference_q8(const std::vector<float>& w, int64_t K, std::vector<int8_t>& q, std::vector<uint16_t>& d) {
    q.assign(w.size(), 0);
    d.assign(w.size() / 32, 0);
    for (size_t b = 0; b < d.size(); ++b) {
        float amax = 0;
        for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(w[b * 32 + i]));
        d[b] = f16_nearest(amax / 127.0f);
        const float s = f16_value(d[b]);
        for (size_t i = 0; i < 32 && s != 0; ++i)
            q[b * 32 + i] = int8_t(std::max(-127.0f, std::min(127.0f, std::nearbyint(w[b * 32 + i] / s))));
    }
    (void)K;
}

std::vector<BackendPtr> q8_backends() {
    std::vector<BackendPtr> out;
    out.push_back(make_cpu_backend());
    int32_t count = 0;
    if (qwen3vl_cuda_device_count(&count) == QWEN3VL_STATUS_OK && count > 0) {
        qwen3vl_backend_params p = qwen3vl_backend_default_params();
        p.type = QWEN3VL_BACKEND_CUDA;
        qwen3vl_backend* b = nullptr;
        if (qwen3vl_backend_create(&p, &b) == QWEN3VL_STATUS_OK) out.emplace_back(b);
    }
    return out;
}

TensorPtr q8_tensor(qwen3vl_backend* b, int64_t N, int64_t K) {
    const int64_t shape[2] = {N, K};
    qwen3vl_tensor* raw = nullptr;
    EXPECT_EQ(qwen3vl_tensor_create(b, QWEN3VL_DTYPE_Q8, 2, shape, &raw), QWEN3VL_STATUS_OK) << last_error();
    return TensorPtr(raw);
}

}  // namespace

TEST(CApiQ8, ShapesAndBytes) {
    BackendPtr b = make_cpu_backend();
    TensorPtr t = q8_tensor(b.get(), 3, 64);
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    ASSERT_EQ(qwen3vl_tensor_describe(t.get(), &d), QWEN3VL_STATUS_OK);
    EXPECT_EQ(d.dtype, QWEN3VL_DTYPE_Q8);
    EXPECT_EQ(d.bytes, 3u * 64 + 3 * 2 * 2);  // the int8 values and one f16 per 32
    qwen3vl_tensor* raw = nullptr;
    const int64_t one[1] = {64}, partial[2] = {3, 40}, four[4] = {2, 2, 3, 64};
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_Q8, 1, one, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("2-D"), std::string::npos) << last_error();
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_Q8, 4, four, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_Q8, 2, partial, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("K = 40 is not a multiple"), std::string::npos) << last_error();
    EXPECT_EQ(raw, nullptr);
    const int64_t view_shape[2] = {1, 64};
    EXPECT_EQ(qwen3vl_tensor_view(t.get(), 0, 2, view_shape, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("no views"), std::string::npos) << last_error();
    // 3-D: a KV cache [capacity, Hkv, D], the planes of the matrix [capacity * Hkv, D].
    const int64_t cache[3] = {5, 2, 64};
    ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_Q8, 3, cache, &raw), QWEN3VL_STATUS_OK) << last_error();
    TensorPtr kv(raw);
    ASSERT_EQ(qwen3vl_tensor_describe(kv.get(), &d), QWEN3VL_STATUS_OK);
    EXPECT_EQ(d.bytes, 5u * 2 * 64 * 17 / 16);
}

TEST(CApiQ8, WriteQuantizesAsSpecifiedAndReadsDequantize) {
    std::mt19937 rng(std::random_device{}());
    std::normal_distribution<float> normal(0.f, 1.f);
    const int64_t N = 9, K = 96;
    std::vector<float> w(size_t(N * K));
    // Rows of very different magnitudes (f16-subnormal scales in row 0), one block of zeros, and a block whose
    // max|w|/127 sits exactly between two f16 values would need luck: random data covers the ties well enough.
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) w[size_t(n * K + k)] = normal(rng) * std::ldexp(1.0f, int(n) * 3 - 18);
    for (int64_t k = 32; k < 64; ++k) w[size_t(4 * K + k)] = 0.0f;
    std::vector<int8_t> q;
    std::vector<uint16_t> d;
    reference_q8(w, K, q, d);
    const size_t bytes = size_t(N * K) + d.size() * 2;
    for (BackendPtr& b : q8_backends()) {
        SCOPED_TRACE(b.get() == nullptr ? "?" : "backend");
        TensorPtr t = q8_tensor(b.get(), N, K);
        ASSERT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4), QWEN3VL_STATUS_OK)
            << last_error();
        std::vector<uint8_t> planes(bytes, 0xcd);
        ASSERT_EQ(qwen3vl_tensor_read(t.get(), QWEN3VL_DTYPE_Q8, planes.data(), bytes), QWEN3VL_STATUS_OK) << last_error();
        for (size_t i = 0; i < q.size(); ++i) ASSERT_EQ(int8_t(planes[i]), q[i]) << "value " << i;
        for (size_t i = 0; i < d.size(); ++i) {
            uint16_t got;
            std::memcpy(&got, planes.data() + q.size() + 2 * i, 2);
            ASSERT_EQ(got, d[i]) << "scale " << i;
        }
        std::vector<float> back(w.size(), NAN);
        ASSERT_EQ(qwen3vl_tensor_read(t.get(), QWEN3VL_DTYPE_F32, back.data(), back.size() * 4), QWEN3VL_STATUS_OK);
        for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(back[i], f16_value(d[i / 32]) * float(q[i])) << i;
        // Raw planes written back read back unchanged.
        TensorPtr u = q8_tensor(b.get(), N, K);
        ASSERT_EQ(qwen3vl_tensor_write(u.get(), QWEN3VL_DTYPE_Q8, planes.data(), bytes), QWEN3VL_STATUS_OK);
        std::vector<uint8_t> again(bytes);
        ASSERT_EQ(qwen3vl_tensor_read(u.get(), QWEN3VL_DTYPE_Q8, again.data(), bytes), QWEN3VL_STATUS_OK);
        EXPECT_EQ(again, planes);
    }
}

TEST(CApiQ8, BadDataAndPairsAreRefusedByName) {
    const int64_t N = 4, K = 64;
    std::vector<float> w(size_t(N * K), 0.5f);
    for (BackendPtr& b : q8_backends()) {
        TensorPtr t = q8_tensor(b.get(), N, K);
        w[size_t(2 * K + 37)] = NAN;
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("weight [2, 37] is not finite"), std::string::npos) << last_error();
        w[size_t(2 * K + 37)] = 3e7f;  // 3e7 / 127 > 65504: the f16 scale of block [2, 1] overflows
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("block [2, 1] overflows"), std::string::npos) << last_error();
        w[size_t(2 * K + 37)] = 0.5f;
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_I32, w.data(), w.size() * 4), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("cannot convert i32 to q8"), std::string::npos) << last_error();
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_Q8, w.data(), 10), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("needs 272 bytes"), std::string::npos) << last_error();
        const int64_t shape[2] = {N, K};
        qwen3vl_tensor* raw = nullptr;
        ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, shape, &raw), QWEN3VL_STATUS_OK);
        TensorPtr f(raw);
        std::vector<uint8_t> planes(272);
        EXPECT_EQ(qwen3vl_tensor_write(f.get(), QWEN3VL_DTYPE_Q8, planes.data(), planes.size()),
                  QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("cannot convert q8 to f32"), std::string::npos) << last_error();
    }
}

TEST(CApiQ8, CheckpointWeightsLoadQuantizedOrConverted) {
    qwen3vl_checkpoint* ck = nullptr;
    ASSERT_EQ(qwen3vl_checkpoint_open(fixture_model("tiny-tied").c_str(), &ck), QWEN3VL_STATUS_OK) << last_error();
    const char* name = "model.language_model.layers.0.self_attn.q_proj.weight";  // [128, 32]
    for (BackendPtr& b : q8_backends()) {
        qwen3vl_tensor* stored = nullptr;
        qwen3vl_tensor* f32 = nullptr;
        qwen3vl_tensor* q8 = nullptr;
        ASSERT_EQ(qwen3vl_checkpoint_tensor(ck, b.get(), name, &stored), QWEN3VL_STATUS_OK) << last_error();
        ASSERT_EQ(qwen3vl_checkpoint_tensor_as(ck, b.get(), name, QWEN3VL_DTYPE_F32, &f32), QWEN3VL_STATUS_OK);
        ASSERT_EQ(qwen3vl_checkpoint_tensor_as(ck, b.get(), name, QWEN3VL_DTYPE_Q8, &q8), QWEN3VL_STATUS_OK)
            << last_error();
        TensorPtr ts(stored), tf(f32), tq(q8);
        qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
        ASSERT_EQ(qwen3vl_tensor_describe(q8, &d), QWEN3VL_STATUS_OK);
        ASSERT_EQ(d.dtype, QWEN3VL_DTYPE_Q8);
        const size_t n = size_t(d.shape[0] * d.shape[1]);
        std::vector<float> a(n), c(n), back(n);
        ASSERT_EQ(qwen3vl_tensor_read(stored, QWEN3VL_DTYPE_F32, a.data(), n * 4), QWEN3VL_STATUS_OK);
        ASSERT_EQ(qwen3vl_tensor_read(f32, QWEN3VL_DTYPE_F32, c.data(), n * 4), QWEN3VL_STATUS_OK);
        EXPECT_EQ(a, c);  // bf16 -> f32 is exact
        // Quantized from the stored values exactly as tensor_write quantizes them.
        std::vector<int8_t> q;
        std::vector<uint16_t> s;
        reference_q8(a, d.shape[1], q, s);
        ASSERT_EQ(qwen3vl_tensor_read(q8, QWEN3VL_DTYPE_F32, back.data(), n * 4), QWEN3VL_STATUS_OK);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], f16_value(s[i / 32]) * float(q[i])) << i;
        qwen3vl_tensor* bad = nullptr;
        // down_proj rows are 88 long (tiny fixture): not whole blocks; a norm weight is 1-D.
        EXPECT_EQ(qwen3vl_checkpoint_tensor_as(ck, b.get(), "model.language_model.layers.0.mlp.down_proj.weight",
                                               QWEN3VL_DTYPE_Q8, &bad),
                  QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("down_proj.weight (bf16, 2-D, last dimension 88) cannot be loaded as q8"),
                  std::string::npos)
            << last_error();
        EXPECT_EQ(qwen3vl_checkpoint_tensor_as(ck, b.get(), "model.language_model.norm.weight", QWEN3VL_DTYPE_Q8, &bad),
                  QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(qwen3vl_checkpoint_tensor_as(ck, b.get(), name, QWEN3VL_DTYPE_I32, &bad),
                  QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(bad, nullptr);
    }
    qwen3vl_checkpoint_free(ck);
}

// ---- Q4 tensors through the exported functions: the layout as qwen3vl.h documents it (dequantized here from the raw
// planes by an implementation written from that comment), CUDA's quantization equal to the CPU's bit for bit (the
// CPU's is checked against the reference in test_quant.cpp), raw planes, refusals.
namespace {

TensorPtr q4_tensor(qwen3vl_backend* b, int64_t N, int64_t K) {
    const int64_t shape[2] = {N, K};
    qwen3vl_tensor* raw = nullptr;
    EXPECT_EQ(qwen3vl_tensor_create(b, QWEN3VL_DTYPE_Q4, 2, shape, &raw), QWEN3VL_STATUS_OK) << last_error();
    return TensorPtr(raw);
}

// qwen3vl.h's QWEN3VL_DTYPE_Q4: w = (d * sc[g]) * q - dmin * mn[g].
std::vector<float> documented_q4_values(const std::vector<uint8_t>& planes, int64_t N, int64_t K) {
    std::vector<float> w(size_t(N * K));
    const uint8_t* headers = planes.data() + size_t(N * K / 2);
    for (int64_t r = 0; r < N; ++r)
        for (int64_t k = 0; k < K; ++k) {
            const uint8_t* h = headers + size_t((r * (K / 256) + k / 256) * 16);
            const int g = int((k % 256) / 32), j = int(k % 32);
            const int sc = h[4 + g] & 63;
            const int mn = (h[4 + g] >> 6) | (((g % 2 == 0 ? h[12 + g / 2] : h[12 + g / 2] >> 4) & 15) << 2);
            const uint8_t byte = planes[size_t(r * K / 2 + (k / 32) * 16 + j % 16)];
            const int q = j < 16 ? byte & 15 : byte >> 4;
            const float d = f16_value(uint16_t(h[0] | (h[1] << 8))), dmin = f16_value(uint16_t(h[2] | (h[3] << 8)));
            w[size_t(r * K + k)] = (d * float(sc)) * float(q) - dmin * float(mn);
        }
    return w;
}

}  // namespace

TEST(CApiQ4, ShapesAndBytes) {
    BackendPtr b = make_cpu_backend();
    TensorPtr t = q4_tensor(b.get(), 3, 512);
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    ASSERT_EQ(qwen3vl_tensor_describe(t.get(), &d), QWEN3VL_STATUS_OK);
    EXPECT_EQ(d.dtype, QWEN3VL_DTYPE_Q4);
    EXPECT_EQ(d.bytes, 3u * 512 / 2 + 3 * 2 * 16);  // the nibbles and one 16-byte header per 256
    qwen3vl_tensor* raw = nullptr;
    const int64_t one[1] = {256}, partial[2] = {3, 288};
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_Q4, 1, one, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("2-D"), std::string::npos) << last_error();
    EXPECT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_Q4, 2, partial, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("whole blocks of 256 weights: K = 288 is not a multiple"), std::string::npos)
        << last_error();
    EXPECT_EQ(raw, nullptr);
    const int64_t view_shape[2] = {1, 512};
    EXPECT_EQ(qwen3vl_tensor_view(t.get(), 0, 2, view_shape, &raw), QWEN3VL_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(last_error().find("no views"), std::string::npos) << last_error();
}

TEST(CApiQ4, WriteQuantizesAlikeOnEveryBackendAndReadsTheDocumentedValues) {
    std::mt19937 rng(std::random_device{}());
    std::normal_distribution<float> normal(0.f, 1.f);
    const int64_t N = 7, K = 768;
    std::vector<float> w(size_t(N * K));
    for (int64_t n = 0; n < N; ++n)  // rows of very different magnitudes, groups off centre
        for (int64_t k = 0; k < K; ++k)
            w[size_t(n * K + k)] = (normal(rng) + 0.3f * float((k / 32) % 3)) * std::ldexp(1.0f, int(n) * 3 - 14);
    for (int64_t k = 256; k < 288; ++k) w[size_t(3 * K + k)] = 0.0f;
    const size_t bytes = size_t(N * K / 2 + N * (K / 256) * 16);
    std::vector<uint8_t> first;
    for (BackendPtr& b : q8_backends()) {
        TensorPtr t = q4_tensor(b.get(), N, K);
        ASSERT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4), QWEN3VL_STATUS_OK)
            << last_error();
        std::vector<uint8_t> planes(bytes, 0xcd);
        ASSERT_EQ(qwen3vl_tensor_read(t.get(), QWEN3VL_DTYPE_Q4, planes.data(), bytes), QWEN3VL_STATUS_OK) << last_error();
        if (first.empty())
            first = planes;
        else
            ASSERT_EQ(planes, first) << "the CUDA quantizer differs from the CPU's";
        const std::vector<float> expect = documented_q4_values(planes, N, K);
        std::vector<float> back(w.size(), NAN);
        ASSERT_EQ(qwen3vl_tensor_read(t.get(), QWEN3VL_DTYPE_F32, back.data(), back.size() * 4), QWEN3VL_STATUS_OK);
        for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(back[i], expect[i]) << i;
        double err2 = 0, ref2 = 0;
        for (size_t i = 0; i < w.size(); ++i) {
            err2 += (double(w[i]) - back[i]) * (double(w[i]) - back[i]);
            ref2 += double(w[i]) * w[i];
        }
        EXPECT_LT(std::sqrt(err2 / ref2), 0.1);  // 4-bit levels: ~7% RMS (test_quant.cpp measures it precisely)
        TensorPtr u = q4_tensor(b.get(), N, K);
        ASSERT_EQ(qwen3vl_tensor_write(u.get(), QWEN3VL_DTYPE_Q4, planes.data(), bytes), QWEN3VL_STATUS_OK);
        std::vector<uint8_t> again(bytes);
        ASSERT_EQ(qwen3vl_tensor_read(u.get(), QWEN3VL_DTYPE_Q4, again.data(), bytes), QWEN3VL_STATUS_OK);
        EXPECT_EQ(again, planes);
    }
}

TEST(CApiQ4, BadDataAndPairsAreRefusedByName) {
    const int64_t N = 4, K = 512;
    std::vector<float> w(size_t(N * K), 0.5f);
    for (BackendPtr& b : q8_backends()) {
        TensorPtr t = q4_tensor(b.get(), N, K);
        w[size_t(2 * K + 300)] = NAN;
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("q4: weight [2, 300] is not finite"), std::string::npos) << last_error();
        w[size_t(2 * K + 300)] = 1e9f;
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("super-block [2, 1] overflows"), std::string::npos) << last_error();
        w[size_t(2 * K + 300)] = 0.5f;
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_Q8, w.data(), 10), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("cannot convert q8 to q4"), std::string::npos) << last_error();
        EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_Q4, w.data(), 10), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("needs 1152 bytes"), std::string::npos) << last_error();
        const int64_t shape[2] = {N, K};
        qwen3vl_tensor* raw = nullptr;
        ASSERT_EQ(qwen3vl_tensor_create(b.get(), QWEN3VL_DTYPE_F32, 2, shape, &raw), QWEN3VL_STATUS_OK);
        TensorPtr f(raw);
        std::vector<uint8_t> planes(1152);
        EXPECT_EQ(qwen3vl_tensor_write(f.get(), QWEN3VL_DTYPE_Q4, planes.data(), planes.size()),
                  QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(last_error().find("cannot convert q4 to f32"), std::string::npos) << last_error();
    }
}

TEST(CApiQ4, LargeWeightsAreQuantizedInChunksAndNamedByTheirOwnRow) {
    // Above 64 MiB of source a device backend stages and quantizes the rows in chunks (4096 rows of 4096 f32 here): the
    // planes must equal the CPU's (which quantizes in place) and a bad weight past the first chunk is named by its row
    // in the whole matrix.
    const int64_t N = 4100, K = 4096;
    std::vector<float> w(size_t(N * K));
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (float& x : w) x = normal(rng);
    for (qwen3vl_dtype dt : {QWEN3VL_DTYPE_Q8, QWEN3VL_DTYPE_Q4}) {
        std::vector<uint8_t> first;
        for (BackendPtr& b : q8_backends()) {
            const int64_t shape[2] = {N, K};
            qwen3vl_tensor* raw = nullptr;
            ASSERT_EQ(qwen3vl_tensor_create(b.get(), dt, 2, shape, &raw), QWEN3VL_STATUS_OK) << last_error();
            TensorPtr t(raw);
            ASSERT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4), QWEN3VL_STATUS_OK)
                << last_error();
            qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
            ASSERT_EQ(qwen3vl_tensor_describe(t.get(), &d), QWEN3VL_STATUS_OK);
            std::vector<uint8_t> planes(size_t(d.bytes));
            ASSERT_EQ(qwen3vl_tensor_read(t.get(), dt, planes.data(), planes.size()), QWEN3VL_STATUS_OK);
            if (first.empty()) {
                first = planes;
            } else if (planes != first) {
                size_t i = 0;
                while (planes[i] == first[i]) ++i;
                const size_t values = size_t(dt == QWEN3VL_DTYPE_Q4 ? N * K / 2 : N * K);
                const size_t row_bytes = size_t(dt == QWEN3VL_DTYPE_Q4 ? K / 2 : K);
                const size_t scale_row = size_t(dt == QWEN3VL_DTYPE_Q4 ? K / 256 * 16 : K / 32 * 2);
                size_t differing = 0;
                for (size_t j = 0; j < planes.size(); ++j) differing += planes[j] != first[j];
                ADD_FAILURE() << (dt == QWEN3VL_DTYPE_Q4 ? "q4" : "q8") << ": the chunked quantization differs from the CPU's in "
                              << differing << " bytes, first at byte " << i
                              << (i < values ? " of the values, row " + std::to_string(i / row_bytes) + " byte " + std::to_string(i % row_bytes)
                                             : " of the scales, row " + std::to_string((i - values) / scale_row) + " byte " +
                                                   std::to_string((i - values) % scale_row))
                              << ": " << int(planes[i]) << " vs the CPU's " << int(first[i]);
            }
            const float kept = w[size_t(4098 * K + 7)];
            w[size_t(4098 * K + 7)] = NAN;
            EXPECT_EQ(qwen3vl_tensor_write(t.get(), QWEN3VL_DTYPE_F32, w.data(), w.size() * 4),
                      QWEN3VL_STATUS_INVALID_ARGUMENT);
            EXPECT_NE(last_error().find("weight [4098, 7] is not finite"), std::string::npos) << last_error();
            w[size_t(4098 * K + 7)] = kept;
        }
    }
}
