// The CUDA backend (cuda_backend.h) and the device queries of cuda_info.h.
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <string>

#include "common.cuh"
#include "cuda_backend.h"
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

CudaBackend::CudaBackend(int device, bool fp32_math)
    : device_(device),
      fp32_math_(fp32_math),
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
    cc_ = info.compute_major * 10 + info.compute_minor;
    sms_ = info.multiprocessors;
    name_ = "cuda:" + std::to_string(device) + " (" + info.name + ", sm_" + std::to_string(info.compute_major) +
            std::to_string(info.compute_minor) + ")";
    QWEN3VL_CUDA_CHECK(cudaSetDevice(device_));
    QWEN3VL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const cublasStatus_t st = cublasLtCreate(&cublaslt_);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(stream_);
        cuda::throw_cublas_error(st, "cublasLtCreate", __FILE__, __LINE__);
    }
}

CudaBackend::~CudaBackend() {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    if (workspace_) pool_.deallocate(workspace_);
    if (cublaslt_) cublasLtDestroy(cublaslt_);
    if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackend::activate() const { QWEN3VL_CUDA_CHECK(cudaSetDevice(device_)); }

void* CudaBackend::gemm_workspace() {
    std::call_once(workspace_once_, [this] { workspace_ = pool_.allocate(kGemmWorkspaceBytes); });
    return workspace_;
}

void CudaBackend::upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) {
    activate();
    const size_t src_bytes = count * dtype_size(src_dtype);
    if (dst_dtype == src_dtype) {
        QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, src, src_bytes, cudaMemcpyHostToDevice, stream_));
    } else {
        Scratch staging(*this, src_bytes);
        QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(staging.as<void>(), src, src_bytes, cudaMemcpyHostToDevice, stream_));
        cuda::convert(dst, dst_dtype, staging.as<void>(), src_dtype, count, stream_);
    }
    // The host buffer may be freed as soon as we return.
    QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                           size_t count) {
    activate();
    const size_t dst_bytes = count * dtype_size(dst_dtype);
    if (dst_dtype == src_dtype) {
        QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, src, dst_bytes, cudaMemcpyDeviceToHost, stream_));
    } else {
        Scratch staging(*this, dst_bytes);
        cuda::convert(staging.as<void>(), dst_dtype, src, src_dtype, count, stream_);
        QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, staging.as<void>(), dst_bytes, cudaMemcpyDeviceToHost, stream_));
    }
    QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

std::unique_ptr<Backend> create_cuda_backend(int device, bool fp32_math) {
    return std::make_unique<CudaBackend>(device, fp32_math);
}

}  // namespace qwen3vl
