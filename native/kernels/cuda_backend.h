// The CUDA backend: one device, one stream, device memory from the shared caching pool (cudaMalloc upstream), a
// cuBLASLt handle and its workspace. Plain C++ (no CUDA headers): the CUDA types travel as their opaque struct
// pointers (cudaStream_t is CUstream_st*).
//
// Every op runs on stream() and may return before it finishes, as do uploads (staged through a pinned ring):
// download() synchronises that stream, and pooled memory is reused in stream order (one stream per backend), so a
// buffer released by an op that is still running is only handed to work queued after it.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "backend.h"

struct CUstream_st;
struct CUevent_st;
struct cublasLtContext;

namespace qwen3vl {

class CudaBackend final : public Backend {
public:
    // kernel_arch: 0, or a lower compute capability whose kernel choices the backend makes (qwen3vl_backend_params).
    CudaBackend(int device, bool fp32_math, int kernel_arch = 0);
    // Matrix products in fp32 even where tensor cores could take bf16/f16 (qwen3vl_backend_params.cuda_fp32_math).
    bool fp32_math() const { return fp32_math_; }
    ~CudaBackend() override;
    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;

    qwen3vl_backend_type type() const override { return QWEN3VL_BACKEND_CUDA; }
    std::string name() const override { return name_; }
    MemoryPool& pool() override { return pool_; }
    void upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) override;
    void download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                  size_t count) override;
    void upload_bytes(void* dst, const void* src, size_t bytes) override;
    void download_bytes(void* dst, const void* src, size_t bytes) override;

    // The ops (core/ops.h), in cuda_ops.cpp: the host entry points of the kernels (linear.cuh, norm.cuh, ...).
    QWEN3VL_OPS_OVERRIDES

    // Stream capture of the calling thread's ops into a CUDA graph. While a thread captures, stream() returns its
    // capture stream on that thread (other threads keep running on the backend's stream), the pool holds every
    // block the thread allocates for the graph (MemoryPool::begin_recording), and host copies on that thread fail.
    // Graphs are launched on the backend's stream, after the work queued before.
    void capture_begin() override;
    std::unique_ptr<Graph> capture_end(bool instantiate) override;
    bool capturing() const;
    void launch_graph(void* exec);  // a cudaGraphExec_t

    // Device-side argument checks (token ids, n_past read from device memory) cannot fail the op that is already
    // queued: the kernel writes a nonzero code here (host-mapped pinned memory), and the next download() reports
    // it as INVALID_ARGUMENT and clears it.
    enum DeviceError : int32_t { kNoError = 0, kEmbeddingIdOutOfRange = 1, kNPastOutOfRange = 2, kSegmentsInvalid = 3,
                               kScatterRowsInvalid = 4 };
    int32_t* device_error_flag() const { return error_flag_device_; }

    // Makes the backend's device current on the calling thread; every op calls it first.
    void activate() const;
    int device() const { return device_; }
    // Compute capability as 10 * major + minor (61, 80, 90, ...).
    // The compute capability kernels are chosen for: the device's, or the lower cuda_kernel_arch.
    int compute_capability() const { return cc_; }
    int multiprocessors() const { return sms_; }
    // The stream ops run on: the backend's own, or the calling thread's capture stream while it captures.
    CUstream_st* stream() const;
    cublasLtContext* cublaslt() const { return cublaslt_; }
    // cuBLASLt workspace, taken from the pool on first use and kept for the backend's lifetime.
    void* gemm_workspace();
    static constexpr size_t kGemmWorkspaceBytes = size_t(32) << 20;

    // Device scratch for one op, back to the pool when it goes out of scope (safe while kernels still use it:
    // see the stream-order note above).
    class Scratch {
    public:
        Scratch(CudaBackend& be, size_t bytes) : pool_(be.pool()), p_(bytes ? pool_.allocate(bytes) : nullptr) {}
        ~Scratch() {
            if (p_) pool_.deallocate(p_);
        }
        Scratch(const Scratch&) = delete;
        Scratch& operator=(const Scratch&) = delete;
        template <class T>
        T* as() const {
            return static_cast<T*>(p_);
        }

    private:
        MemoryPool& pool_;
        void* p_;
    };

private:
    int device_;
    bool fp32_math_;
    int cc_ = 0;
    int sms_ = 0;
    std::string name_;
    MemoryPool pool_;
    CUstream_st* stream_ = nullptr;
    cublasLtContext* cublaslt_ = nullptr;
    std::once_flag workspace_once_;
    volatile int32_t* error_flag_host_ = nullptr;
    int32_t* error_flag_device_ = nullptr;
    void check_device_errors();
    void* workspace_ = nullptr;

    // Pinned host staging ring for uploads: upload() copies the caller's bytes here, in chunks of at most
    // kRingMaxUpload, and queues the copy of each chunk to the device without waiting for it. Each queued copy
    // records an event; a later chunk only waits on the events of copies whose ring bytes it is about to overwrite
    // (when the ring wraps onto them), so a large upload (the 25 MB of a 1024x1024 image's pixels, a weight) streams:
    // the host copies one chunk while the device copies the ones before it, at pinned-memory speed, and upload()
    // returns with the last chunks still in flight.
    struct RingRecord {
        size_t begin;
        size_t end;
        CUevent_st* event;
    };
    static constexpr size_t kRingBytes = size_t(8) << 20;
    static constexpr size_t kRingMaxUpload = kRingBytes / 4;
    // One chunk of upload(): count elements, at most kRingMaxUpload bytes; ring_mutex_ held.
    // src_bytes of host data; converted (count elements) when the dtypes differ, else copied unchanged.
    void upload_chunk(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count,
                      size_t src_bytes);
    void check_host_copy(const char* what) const;
    static constexpr size_t kRingAlign = 256;
    static constexpr size_t kRingMaxRecords = 1024;
    // Bytes of the ring for one upload of `bytes`, waiting as needed until no queued copy still reads them.
    unsigned char* ring_acquire(size_t bytes, RingRecord& record);
    void ring_retire_all();  // after the stream was synchronised: every queued copy is done
    std::mutex ring_mutex_;
    unsigned char* ring_ = nullptr;
    size_t ring_head_ = 0;
    std::deque<RingRecord> ring_pending_;
    std::vector<CUevent_st*> ring_free_events_;
};

}  // namespace qwen3vl
