// The CUDA backend: one device, one stream, device memory from the shared caching pool (cudaMalloc upstream).
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <string>

#include "backend.h"
#include "common.cuh"
#include "convert.cuh"
#include "cuda_info.h"
#include "dtype.h"

#ifndef QWEN3VL_CUDA_ARCHS
#define QWEN3VL_CUDA_ARCHS ""
#endif

namespace qwen3vl {

bool cuda_compiled() { return true; }

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

void cuda_device_query(int index, qwen3vl_cuda_device* out) {
    const int n = cuda_device_count();
    require(index >= 0 && index < n,
            "CUDA device index " + std::to_string(index) + " out of range (" + std::to_string(n) + " devices)");
    cudaDeviceProp prop{};
    QWEN3VL_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    int previous = 0;
    QWEN3VL_CUDA_CHECK(cudaGetDevice(&previous));
    QWEN3VL_CUDA_CHECK(cudaSetDevice(index));
    size_t free_bytes = 0, total_bytes = 0;
    const cudaError_t mem = cudaMemGetInfo(&free_bytes, &total_bytes);
    cudaSetDevice(previous);
    if (mem != cudaSuccess) cuda::throw_cuda_error(mem, "cudaMemGetInfo", __FILE__, __LINE__);
    out->index = index;
    out->compute_major = prop.major;
    out->compute_minor = prop.minor;
    out->multiprocessors = prop.multiProcessorCount;
    out->total_memory = total_bytes;
    out->free_memory = free_bytes;
    std::memset(out->name, 0, sizeof(out->name));
    std::strncpy(out->name, prop.name, sizeof(out->name) - 1);
}

int cuda_runtime_version() { return CUDART_VERSION; }

int cuda_driver_version() {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return v;
}

const char* cuda_architectures() { return QWEN3VL_CUDA_ARCHS; }

namespace {

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int device)
        : device_(device),
          pool_("cuda:" + std::to_string(device),
                [device](size_t n) -> void* {
                    void* p = nullptr;
                    if (cudaSetDevice(device) != cudaSuccess || cudaMalloc(&p, n) != cudaSuccess) {
                        cudaGetLastError();
                        return nullptr;
                    }
                    return p;
                },
                [device](void* p) {
                    cudaSetDevice(device);
                    cudaFree(p);
                }) {
        qwen3vl_cuda_device info{};
        cuda_device_query(device, &info);
        name_ = "cuda:" + std::to_string(device) + " (" + info.name + ", sm_" + std::to_string(info.compute_major) +
                std::to_string(info.compute_minor) + ")";
        QWEN3VL_CUDA_CHECK(cudaSetDevice(device_));
        QWEN3VL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    }

    ~CudaBackend() override {
        cudaSetDevice(device_);
        if (stream_) cudaStreamDestroy(stream_);
    }

    qwen3vl_backend_type type() const override { return QWEN3VL_BACKEND_CUDA; }
    std::string name() const override { return name_; }
    MemoryPool& pool() override { return pool_; }

    void upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) override {
        QWEN3VL_CUDA_CHECK(cudaSetDevice(device_));
        const size_t src_bytes = count * dtype_size(src_dtype);
        if (dst_dtype == src_dtype) {
            QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, src, src_bytes, cudaMemcpyHostToDevice, stream_));
        } else {
            Staging staging(pool_, src_bytes);
            QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(staging.p, src, src_bytes, cudaMemcpyHostToDevice, stream_));
            cuda::convert(dst, dst_dtype, staging.p, src_dtype, count, stream_);
            QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream_));
            return;
        }
        QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    void download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                  size_t count) override {
        QWEN3VL_CUDA_CHECK(cudaSetDevice(device_));
        const size_t dst_bytes = count * dtype_size(dst_dtype);
        if (dst_dtype == src_dtype) {
            QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, src, dst_bytes, cudaMemcpyDeviceToHost, stream_));
        } else {
            Staging staging(pool_, dst_bytes);
            cuda::convert(staging.p, dst_dtype, src, src_dtype, count, stream_);
            QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, staging.p, dst_bytes, cudaMemcpyDeviceToHost, stream_));
            QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream_));
            return;
        }
        QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

private:
    // A pooled device buffer released when the copy is done (also on an exception).
    struct Staging {
        Staging(MemoryPool& pool, size_t bytes) : pool(pool), p(pool.allocate(bytes)) {}
        ~Staging() { pool.deallocate(p); }
        MemoryPool& pool;
        void* p;
    };

    int device_;
    std::string name_;
    cudaStream_t stream_ = nullptr;
    MemoryPool pool_;
};

}  // namespace

std::unique_ptr<Backend> create_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace qwen3vl
