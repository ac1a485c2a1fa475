#include "cpu_backend.h"

#include <cstring>

#include "convert.h"
#include "cpu_features.h"
#include "platform.h"

namespace qwen3vl {

CpuBackend::CpuBackend(int threads)
    : pool_("cpu", [](size_t n) { return aligned_alloc_bytes(n, 64); }, [](void* p) { aligned_free_bytes(p); }),
      threads_(threads > 0 ? threads : logical_processor_count()) {}

std::string CpuBackend::name() const {
    return std::string("cpu (") + cpu_kernels_name(cpu_kernels()) + ", " + std::to_string(threads_.size()) +
           " threads)";
}

void CpuBackend::upload(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype, size_t count) {
    cpu::convert(dst, dst_dtype, src, src_dtype, count);
}

void CpuBackend::download(void* dst, qwen3vl_dtype dst_dtype, const void* src, qwen3vl_dtype src_dtype,
                          size_t count) {
    cpu::convert(dst, dst_dtype, src, src_dtype, count);
}

void CpuBackend::upload_bytes(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
}

void CpuBackend::download_bytes(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
}

std::unique_ptr<Backend> create_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace qwen3vl
