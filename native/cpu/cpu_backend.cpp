// The CPU backend: 64-byte aligned host memory from the shared caching pool; copies are conversions.
#include <memory>
#include <string>

#include "backend.h"
#include "convert.h"
#include "cpu_features.h"
#include "platform.h"

namespace qwen3vl {
namespace {

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(int threads)
        : threads_(threads > 0 ? threads : logical_processor_count()),
          pool_("cpu", [](size_t n) { return aligned_alloc_bytes(n, 64); }, [](void* p) { aligned_free_bytes(p); }) {}

    qwen3vl_backend_type type() const override { return QWEN3VL_BACKEND_CPU; }
    std::string name() const override {
        return std::string("cpu (") + cpu_kernels_name(cpu_kernels()) + ", " + std::to_string(threads_) + " threads)";
    }
    MemoryPool& pool() override { return pool_; }

    void upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) override {
        cpu::convert(dst, dst_dtype, src, src_dtype, count);
    }
    void download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                  size_t count) override {
        cpu::convert(dst, dst_dtype, src, src_dtype, count);
    }

private:
    int threads_;
    MemoryPool pool_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace qwen3vl
