// The backend interface: where tensors live and ops run. The CPU backend (native/cpu) and the CUDA backend
// (native/kernels) implement it: memory, copies and capture here, the ops through the op-family interfaces of
// core/ops.h. The C API checks an op's arguments and calls it on the tensors' backend; it never names a backend.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "error.h"
#include "memory_pool.h"
#include "ops.h"
#include "qwen3vl.h"

namespace qwen3vl {

// A recorded sequence of ops, replayed as a unit (a CUDA graph): see qwen3vl_backend_capture_begin.
class Graph {
public:
    virtual ~Graph() = default;
    virtual void launch() = 0;
};

class Backend : public ElementwiseOps,
                public NormOps,
                public LinearOps,
                public RopeOps,
                public AttentionOps,
                public EmbeddingOps,
                public ReduceOps,
                public WeightOps {
public:
    virtual ~Backend() = default;
    virtual qwen3vl_backend_type type() const = 0;
    virtual std::string name() const = 0;

    // Memory from the backend's pool (device memory for CUDA). Throws OUT_OF_MEMORY.
    // persistent: sized exactly (MemoryPool::allocate's exact), for weights.
    void* allocate(size_t bytes, bool persistent = false) { return pool().allocate(bytes, persistent); }
    void deallocate(void* p) noexcept { pool().deallocate(p); }
    virtual MemoryPool& pool() = 0;
    const MemoryPool& pool() const { return const_cast<Backend*>(this)->pool(); }

    // Host <-> backend copies with element conversion: count elements of src_dtype at host src become
    // dst_dtype at backend memory dst (and the reverse). Synchronous.
    virtual void upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                        size_t count) = 0;
    virtual void download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                          size_t count) = 0;
    // The same for bytes copied unchanged (the planes of a block-quantized tensor).
    virtual void upload_bytes(void* dst, const void* src, size_t bytes) = 0;
    virtual void download_bytes(void* dst, const void* src, size_t bytes) = 0;
    // Whether the backend's memory is the host's (a host pointer, a mapped file, is backend memory as it is).
    bool host_memory() const { return type() == QWEN3VL_BACKEND_CPU; }

    // Records instead of running the ops the calling thread issues, until capture_end, which returns them as a
    // Graph (or discards them when instantiate is false). Backends that run ops eagerly (the CPU) do not record.
    virtual void capture_begin() {
        fail(QWEN3VL_STATUS_UNSUPPORTED, "graph capture is not supported on " + name() + " (ops run eagerly)");
    }
    virtual std::unique_ptr<Graph> capture_end(bool instantiate) {
        (void)instantiate;
        fail(QWEN3VL_STATUS_UNSUPPORTED, "graph capture is not supported on " + name());
    }
};

std::unique_ptr<Backend> create_cpu_backend(int threads);
// Defined in native/kernels when CUDA is compiled in; otherwise throws UNSUPPORTED.
std::unique_ptr<Backend> create_cuda_backend(int device, bool fp32_math, int kernel_arch = 0);

}  // namespace qwen3vl
