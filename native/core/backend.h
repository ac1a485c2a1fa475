// The backend interface: where tensors live and ops run. The CPU backend (native/cpu) and the CUDA backend
// (native/kernels) implement it; the C API picks the implementation from the tensors' backend.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "memory_pool.h"
#include "qwen3vl.h"

namespace qwen3vl {

class Backend {
public:
    virtual ~Backend() = default;
    virtual qwen3vl_backend_type type() const = 0;
    virtual std::string name() const = 0;

    // Memory from the backend's pool (device memory for CUDA). Throws OUT_OF_MEMORY.
    void* allocate(size_t bytes) { return pool().allocate(bytes); }
    void deallocate(void* p) noexcept { pool().deallocate(p); }
    virtual MemoryPool& pool() = 0;
    const MemoryPool& pool() const { return const_cast<Backend*>(this)->pool(); }

    // Host <-> backend copies with element conversion: count elements of src_dtype at host src become
    // dst_dtype at backend memory dst (and the reverse). Synchronous.
    virtual void upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                        size_t count) = 0;
    virtual void download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                          size_t count) = 0;
};

std::unique_ptr<Backend> create_cpu_backend(int threads);
// Defined in native/kernels when CUDA is compiled in; otherwise throws UNSUPPORTED.
std::unique_ptr<Backend> create_cuda_backend(int device, bool fp32_math);

}  // namespace qwen3vl
