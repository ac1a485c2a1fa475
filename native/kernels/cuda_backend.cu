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
    const cudaError_t ring = cudaHostAlloc(reinterpret_cast<void**>(&ring_), kRingBytes, cudaHostAllocDefault);
    if (ring != cudaSuccess) {
        ring_ = nullptr;
        cudaStreamDestroy(stream_);
        cuda::throw_cuda_error(ring, "cudaHostAlloc(upload ring)", __FILE__, __LINE__);
    }
    const cublasStatus_t st = cublasLtCreate(&cublaslt_);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cudaFreeHost(ring_);
        cudaStreamDestroy(stream_);
        cuda::throw_cublas_error(st, "cublasLtCreate", __FILE__, __LINE__);
    }
}

CudaBackend::~CudaBackend() {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    if (workspace_) pool_.deallocate(workspace_);
    if (cublaslt_) cublasLtDestroy(cublaslt_);
    for (const RingRecord& r : ring_pending_) cudaEventDestroy(r.event);
    for (cudaEvent_t e : ring_free_events_) cudaEventDestroy(e);
    if (ring_) cudaFreeHost(ring_);
    if (stream_) cudaStreamDestroy(stream_);
}

unsigned char* CudaBackend::ring_acquire(size_t bytes, RingRecord& record) {
    const size_t n = (bytes + kRingAlign - 1) / kRingAlign * kRingAlign;
    size_t begin = ring_head_;
    if (begin + n > kRingBytes) begin = 0;  // wrap; the tail [ring_head_, kRingBytes) stays unused this lap
    const size_t end = begin + n;
    // Queued copies complete in stream order, so waiting on the newest one that reads [begin, end) covers every
    // older one; keep the record list bounded the same way.
    size_t last = 0;  // one past the newest record to retire
    for (size_t i = 0; i < ring_pending_.size(); ++i) {
        const RingRecord& r = ring_pending_[i];
        if (r.begin < end && begin < r.end) last = i + 1;
    }
    if (ring_pending_.size() >= kRingMaxRecords && last < ring_pending_.size() / 2) last = ring_pending_.size() / 2;
    if (last > 0) {
        QWEN3VL_CUDA_CHECK(cudaEventSynchronize(ring_pending_[last - 1].event));
        for (size_t i = 0; i < last; ++i) {
            ring_free_events_.push_back(ring_pending_.front().event);
            ring_pending_.pop_front();
        }
    }
    cudaEvent_t event = nullptr;
    if (!ring_free_events_.empty()) {
        event = ring_free_events_.back();
        ring_free_events_.pop_back();
    } else {
        QWEN3VL_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    }
    record = RingRecord{begin, end, event};
    ring_head_ = end;
    return ring_ + begin;
}

void CudaBackend::ring_retire_all() {
    std::lock_guard<std::mutex> lock(ring_mutex_);
    for (const RingRecord& r : ring_pending_) ring_free_events_.push_back(r.event);
    ring_pending_.clear();
}

void CudaBackend::activate() const { QWEN3VL_CUDA_CHECK(cudaSetDevice(device_)); }

void* CudaBackend::gemm_workspace() {
    std::call_once(workspace_once_, [this] { workspace_ = pool_.allocate(kGemmWorkspaceBytes); });
    return workspace_;
}

void CudaBackend::upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) {
    activate();
    const size_t src_bytes = count * dtype_size(src_dtype);
    if (src_bytes == 0) return;
    if (src_bytes <= kRingMaxUpload) {
        // Asynchronous: the caller's bytes go to the pinned ring and the copy reads them from there, so the caller
        // may free its buffer on return without waiting for the device.
        std::lock_guard<std::mutex> lock(ring_mutex_);
        RingRecord record{};
        unsigned char* staged = ring_acquire(src_bytes, record);
        std::memcpy(staged, src, src_bytes);
        try {
            if (dst_dtype == src_dtype) {
                QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, staged, src_bytes, cudaMemcpyHostToDevice, stream_));
            } else {
                // Pooled memory is reused in stream order, so the scratch may go back once the convert is queued.
                Scratch scratch(*this, src_bytes);
                QWEN3VL_CUDA_CHECK(
                    cudaMemcpyAsync(scratch.as<void>(), staged, src_bytes, cudaMemcpyHostToDevice, stream_));
                cuda::convert(dst, dst_dtype, scratch.as<void>(), src_dtype, count, stream_);
            }
            QWEN3VL_CUDA_CHECK(cudaEventRecord(record.event, stream_));
        } catch (...) {
            // Nothing known to be queued reads these bytes past a failure: make sure, then drop the record.
            cudaStreamSynchronize(stream_);
            ring_free_events_.push_back(record.event);
            throw;
        }
        ring_pending_.push_back(record);
        return;
    }
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
    ring_retire_all();  // every queued upload has finished reading the ring
}

std::unique_ptr<Backend> create_cuda_backend(int device, bool fp32_math) {
    return std::make_unique<CudaBackend>(device, fp32_math);
}

}  // namespace qwen3vl
