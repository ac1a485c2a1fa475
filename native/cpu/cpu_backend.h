// The CPU backend: 64-byte aligned host memory from the shared caching pool, and the worker threads every CPU op
// runs on. Copies to and from the host are conversions.
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

private:
    MemoryPool pool_;
    ThreadPool threads_;
};

}  // namespace qwen3vl
