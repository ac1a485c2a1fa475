// L2 prefetch of weights (host entry point; kernel in prefetch.cu): a hint queued between the ops of a decoding step
// so that the projections after a latency-bound stretch (attention) find their weights in L2.
#pragma once

#include <cstddef>

#include "cuda_backend.h"

namespace qwen3vl {
namespace cuda {

// Up to kPrefetchRanges ranges of device memory, taken in order until half of the device's L2 cache is covered.
constexpr int kPrefetchRanges = 3;
struct PrefetchRanges {
    const void* ptr[kPrefetchRanges];
    size_t bytes[kPrefetchRanges];
};
void prefetch_l2(CudaBackend& be, const PrefetchRanges& r);

}  // namespace cuda
}  // namespace qwen3vl
