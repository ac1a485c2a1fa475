// The CUDA backend (cuda_backend.h) and the device queries of cuda_info.h.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
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

namespace {

// The capture of the calling thread (CudaBackend::capture_begin), if any.
struct CaptureState {
    const CudaBackend* backend = nullptr;
    cudaStream_t stream = nullptr;
};
thread_local CaptureState t_capture;

class CudaGraph final : public Graph {
public:
    CudaGraph(CudaBackend& be, cudaGraph_t graph, cudaGraphExec_t exec, std::vector<void*> blocks)
        : be_(be), graph_(graph), exec_(exec), blocks_(std::move(blocks)) {}
    ~CudaGraph() override {
        cudaSetDevice(be_.device());
        // A launch may still be running: let it finish before its held memory goes back to the pool.
        cudaStreamSynchronize(be_.stream());
        cudaGraphExecDestroy(exec_);
        cudaGraphDestroy(graph_);
        be_.pool().release_held(blocks_);
    }
    CudaGraph(const CudaGraph&) = delete;
    CudaGraph& operator=(const CudaGraph&) = delete;
    void launch() override { be_.launch_graph(exec_); }

private:
    CudaBackend& be_;
    cudaGraph_t graph_;
    cudaGraphExec_t exec_;
    std::vector<void*> blocks_;
};

const char* device_error_text(int32_t code) {
    switch (code) {
        case CudaBackend::kEmbeddingIdOutOfRange:
            return "qwen3vl_op_embedding (queued earlier on this backend): a token id was outside the table; its "
                   "output row was set to zero";
        case CudaBackend::kNPastOutOfRange:
            return "qwen3vl_op_qk_norm_rope_kv (queued earlier on this backend): n_past read from n_past_tensor was "
                   "outside 0 .. its bound (the n_past argument, or cache rows - T); no cache row was written";
        case CudaBackend::kSegmentsInvalid:
            return "qwen3vl_op_attention (queued earlier on this backend): segments did not run from 0 to T without "
                   "decreasing; they were clamped and the output is not meaningful";
        case CudaBackend::kScatterRowsInvalid:
            return "qwen3vl_op_scatter_rows (queued earlier on this backend): a row was outside x or repeated an earlier "
                   "one; rows outside x were skipped and x is not meaningful";
        default: return "an op queued earlier on this backend failed a device-side argument check";
    }
}

}  // namespace

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

CudaBackend::CudaBackend(int device, bool fp32_math, int kernel_arch)
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
            std::to_string(info.compute_minor);
    if (kernel_arch == 0) {
        const char* env = std::getenv("QWEN3VL_CUDA_KERNEL_ARCH");
        if (env && *env) {
            char* end = nullptr;
            const long v = std::strtol(env, &end, 10);
            require(*end == '\0' && v > 0 && v < 1000, std::string("QWEN3VL_CUDA_KERNEL_ARCH='") + env +
                                                          "' is not a compute capability such as 61");
            kernel_arch = static_cast<int>(v);
        }
    }
    if (kernel_arch != 0) {
        require(kernel_arch >= 50 && kernel_arch <= cc_,
                "cuda_kernel_arch " + std::to_string(kernel_arch) + " must be between 50 and the device's " +
                    std::to_string(cc_));
        cc_ = kernel_arch;  // every kernel choice below reads compute_capability()
        name_ += ", kernels of sm_" + std::to_string(kernel_arch);
    }
    name_ += ")";
    QWEN3VL_CUDA_CHECK(cudaSetDevice(device_));
    QWEN3VL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const cudaError_t ring = cudaHostAlloc(reinterpret_cast<void**>(&ring_), kRingBytes, cudaHostAllocDefault);
    if (ring != cudaSuccess) {
        ring_ = nullptr;
        cudaStreamDestroy(stream_);
        cuda::throw_cuda_error(ring, "cudaHostAlloc(upload ring)", __FILE__, __LINE__);
    }
    void* flag = nullptr;
    const cudaError_t fe = cudaHostAlloc(&flag, sizeof(int32_t), cudaHostAllocMapped);
    if (fe != cudaSuccess) {
        cudaFreeHost(ring_);
        cudaStreamDestroy(stream_);
        cuda::throw_cuda_error(fe, "cudaHostAlloc(device error flag)", __FILE__, __LINE__);
    }
    error_flag_host_ = static_cast<volatile int32_t*>(flag);
    *error_flag_host_ = kNoError;
    void* flag_device = nullptr;
    const cudaError_t fd = cudaHostGetDevicePointer(&flag_device, flag, 0);
    if (fd != cudaSuccess) {
        cudaFreeHost(flag);
        cudaFreeHost(ring_);
        cudaStreamDestroy(stream_);
        cuda::throw_cuda_error(fd, "cudaHostGetDevicePointer(device error flag)", __FILE__, __LINE__);
    }
    error_flag_device_ = static_cast<int32_t*>(flag_device);
    const cublasStatus_t st = cublasLtCreate(&cublaslt_);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cudaFreeHost(flag);
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
    if (error_flag_host_) cudaFreeHost(const_cast<int32_t*>(error_flag_host_));
    if (stream_) cudaStreamDestroy(stream_);
}

CUstream_st* CudaBackend::stream() const { return t_capture.backend == this ? t_capture.stream : stream_; }

bool CudaBackend::capturing() const { return t_capture.backend == this; }

void CudaBackend::capture_begin() {
    activate();
    if (t_capture.backend != nullptr)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "this thread is already capturing a graph (one capture per thread)");
    cudaStream_t s = nullptr;
    QWEN3VL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    // Relaxed: the pool may still cudaMalloc a first block for the graph on this thread while it captures.
    const cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    if (e != cudaSuccess) {
        cudaStreamDestroy(s);
        cuda::throw_cuda_error(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
    }
    try {
        pool_.begin_recording();
    } catch (...) {
        cudaGraph_t g = nullptr;
        cudaStreamEndCapture(s, &g);
        if (g) cudaGraphDestroy(g);
        cudaStreamDestroy(s);
        throw;
    }
    t_capture = CaptureState{this, s};
}

std::unique_ptr<Graph> CudaBackend::capture_end(bool instantiate) {
    if (t_capture.backend != this)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "this thread is not capturing a graph on " + name_);
    activate();
    const cudaStream_t s = t_capture.stream;
    t_capture = CaptureState{};
    std::vector<void*> blocks = pool_.end_recording();
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(s, &graph);
    cudaStreamDestroy(s);
    if (e != cudaSuccess || !instantiate) {
        if (graph) cudaGraphDestroy(graph);
        pool_.release_held(blocks);  // nothing ran and nothing will: the memory is free again
        if (e != cudaSuccess) cuda::throw_cuda_error(e, "cudaStreamEndCapture", __FILE__, __LINE__);
        return nullptr;
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t ie = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    if (ie != cudaSuccess) {
        cudaGraphDestroy(graph);
        pool_.release_held(blocks);
        cuda::throw_cuda_error(ie, "cudaGraphInstantiateWithFlags", __FILE__, __LINE__);
    }
    try {
        return std::make_unique<CudaGraph>(*this, graph, exec, std::move(blocks));
    } catch (...) {
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        pool_.release_held(blocks);
        throw;
    }
}

void CudaBackend::launch_graph(void* exec) {
    activate();
    if (capturing()) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "a graph cannot be launched while this thread captures");
    QWEN3VL_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), stream_));
}

void CudaBackend::check_device_errors() {
    const int32_t code = *error_flag_host_;
    if (code == kNoError) return;
    *error_flag_host_ = kNoError;
    fail(QWEN3VL_STATUS_INVALID_ARGUMENT, device_error_text(code));
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

void CudaBackend::check_host_copy(const char* what) const {
    if (capturing())
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string("tensor ") + what +
                                                  " are not recorded in a graph: write a graph's inputs before "
                                                  "launching it and read its outputs after");
}

void CudaBackend::upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) {
    activate();
    if (capturing())
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
             "tensor writes are not recorded in a graph: write the graph's inputs before launching it");
    const size_t src_size = dtype_size(src_dtype), dst_size = dtype_size(dst_dtype);
    if (count == 0 || src_size == 0) return;
    // Chunks of at most kRingMaxUpload bytes, each copied into the ring while the copies of the chunks before it are
    // still running (ring_acquire waits only for the ring bytes it reuses).
    const size_t chunk = kRingMaxUpload / src_size;
    std::lock_guard<std::mutex> lock(ring_mutex_);
    for (size_t first = 0; first < count; first += chunk) {
        const size_t n = std::min(chunk, count - first);
        upload_chunk(static_cast<unsigned char*>(dst) + first * dst_size, dst_dtype,
                     static_cast<const unsigned char*>(src) + first * src_size, src_dtype, n, n * src_size);
    }
}

void CudaBackend::upload_bytes(void* dst, const void* src, size_t bytes) {
    activate();
    check_host_copy("writes");
    std::lock_guard<std::mutex> lock(ring_mutex_);
    for (size_t first = 0; first < bytes; first += kRingMaxUpload) {
        const size_t n = std::min(kRingMaxUpload, bytes - first);
        upload_chunk(static_cast<unsigned char*>(dst) + first, QWEN3VL_DTYPE_Q8,
                     static_cast<const unsigned char*>(src) + first, QWEN3VL_DTYPE_Q8, n, n);
    }
}

void CudaBackend::upload_chunk(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                               size_t count, size_t src_bytes) {
    RingRecord record{};
    unsigned char* staged = ring_acquire(src_bytes, record);
    // The caller's bytes go to the pinned ring and the copy reads them from there, so the caller may free its buffer
    // as soon as upload() returns, without waiting for the device.
    std::memcpy(staged, src, src_bytes);
    try {
        if (dst_dtype == src_dtype) {
            QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, staged, src_bytes, cudaMemcpyHostToDevice, stream_));
        } else {
            // Pooled memory is reused in stream order, so the scratch may go back once the convert is queued.
            Scratch scratch(*this, src_bytes);
            QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(scratch.as<void>(), staged, src_bytes, cudaMemcpyHostToDevice, stream_));
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
}

void CudaBackend::download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                           size_t count) {
    activate();
    if (capturing())
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
             "tensor reads are not recorded in a graph: read the graph's outputs after launching it");
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
    check_device_errors();
}

void CudaBackend::download_bytes(void* dst, const void* src, size_t bytes) {
    activate();
    check_host_copy("reads");
    if (bytes) QWEN3VL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    QWEN3VL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    ring_retire_all();
    check_device_errors();
}

std::unique_ptr<Backend> create_cuda_backend(int device, bool fp32_math, int kernel_arch) {
    return std::make_unique<CudaBackend>(device, fp32_math, kernel_arch);
}

}  // namespace qwen3vl
