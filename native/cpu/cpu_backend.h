// The CPU backend: 64-byte aligned host memory from the shared caching pool, and the worker threads every CPU op
// runs on. Copies to and from the host are conversions. The ops (core/ops.h) are in cpu_ops.cpp: the kernels of
// this folder, and the fused ops composed of them in the order the unfused op sequence runs them, so a fused op's
// result is bitwise that sequence's.
#pragma once

#include <memory>
#include <string>

#include "backend.h"
#include "thread_pool.h"

namespace qwen3vl {

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(int threads);

    qwen3vl_backend_type type() const override { return QWEN3VL_BACKEND_CPU; }
    std::string name() const override;
    MemoryPool& pool() override { return pool_; }
    ThreadPool& threads() { return threads_; }

    void upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) override;
    void download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                  size_t count) override;
    void upload_bytes(void* dst, const void* src, size_t bytes) override;
    void download_bytes(void* dst, const void* src, size_t bytes) override;

    // The ops (core/ops.h), in cpu_ops.cpp.
    QWEN3VL_OPS_OVERRIDES

private:
    MemoryPool pool_;
    ThreadPool threads_;
};

}  // namespace qwen3vl
