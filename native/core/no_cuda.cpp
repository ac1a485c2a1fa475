// Stand-ins for a build without CUDA: everything says "not compiled in".
#include <memory>

#include "backend.h"
#include "cuda_info.h"
#include "error.h"

namespace qwen3vl {

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
void cuda_device_query(int, qwen3vl_cuda_device*) {
    fail(QWEN3VL_STATUS_UNSUPPORTED, "this build of qwen3vl has no CUDA support (built with QWEN3VL_CUDA=OFF)");
}
int cuda_runtime_version() { return 0; }
int cuda_driver_version() { return 0; }
const char* cuda_architectures() { return ""; }

std::unique_ptr<Backend> create_cuda_backend(int, bool, int) {
    fail(QWEN3VL_STATUS_UNSUPPORTED, "this build of qwen3vl has no CUDA support (built with QWEN3VL_CUDA=OFF)");
}

}  // namespace qwen3vl
