// Attention segments checked on the device (host entry point; kernel in segments.cu). Reading them on the host would
// wait for the stream at every vision block and could not be captured in a graph.
#pragma once

#include <cstdint>

#include "cuda_backend.h"

namespace qwen3vl {
namespace cuda {

// Writes to `sane` (S + 1 entries) the segment offsets the attention kernels read: `segments` itself when it runs
// from 0 to T without decreasing, else a repaired copy (clamped into 0 .. T, made non-decreasing, ends at 0 and T)
// with the backend's device error flag raised, so a bad tensor can never send a kernel outside q's T rows.
void sanitize_segments(CudaBackend& be, int32_t* sane, const int32_t* segments, int64_t n_segments, int64_t tokens);

}  // namespace cuda
}  // namespace qwen3vl
