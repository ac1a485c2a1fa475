// What the CUDA side of the library reports about itself and the machine. Implemented in native/kernels when
// CUDA is compiled in, and by core/no_cuda.cpp otherwise.
#pragma once

#include "qwen3vl.h"

namespace qwen3vl {

bool cuda_compiled();
// Usable devices; 0 (not an error) when the driver or a device is missing.
int cuda_device_count();
// Throws INVALID_ARGUMENT for a bad index, UNSUPPORTED without CUDA, DEVICE_ERROR when the query fails.
void cuda_device_query(int index, qwen3vl_cuda_device* out);
int cuda_runtime_version();
int cuda_driver_version();
const char* cuda_architectures();

}  // namespace qwen3vl
