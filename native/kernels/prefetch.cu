// L2 prefetch: a small grid issues prefetch.global.L2 for every 128-byte line of the ranges and exits; the lines
// arrive while the kernels queued after it run. Decoding alternates bandwidth-bound GEMVs with latency-bound stretches
// (attention, split-K merge) during which HBM is idle: prefetching the next projections' weights there moves part of
// their streaming into that idle time, and they then read it from L2.
//
// Launched as PDL and letting its dependents launch at once, so it costs the stream no serialisation: it waits for
// the kernel before it (pdl_wait) only at its end, so that its own completion still implies that kernel's, which the
// kernel after it relies on.
#include <algorithm>
#include <mutex>

#include "common.cuh"
#include "prefetch.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

constexpr int kLine = 128;
constexpr unsigned kPrefetchThreads = 256;

__global__ void __launch_bounds__(kPrefetchThreads) prefetch_l2_kernel(PrefetchRanges r) {
    pdl_launch_dependents();
    const size_t stride = size_t(gridDim.x) * blockDim.x * kLine;
    for (int i = 0; i < kPrefetchRanges; ++i) {
        const char* base = static_cast<const char*>(r.ptr[i]);
        for (size_t off = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * kLine; off < r.bytes[i]; off += stride)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(base + off));
    }
    pdl_wait();
}

// Half of the device's L2 cache, queried once per device.
size_t prefetch_budget(int device) {
    static std::mutex mutex;
    static int known[64] = {};  // L2 bytes per device index, 0 until queried
    std::lock_guard<std::mutex> lock(mutex);
    if (device < 0 || device >= 64) return 0;
    if (known[device] == 0) {
        int l2 = 0;
        QWEN3VL_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
        known[device] = std::max(l2, 1);
    }
    return size_t(known[device]) / 2;
}

}  // namespace

void prefetch_l2(CudaBackend& be, const PrefetchRanges& ranges) {
    be.activate();
    PrefetchRanges r = ranges;
    size_t left = prefetch_budget(be.device()), total = 0;
    for (int i = 0; i < kPrefetchRanges; ++i) {
        if (r.ptr[i] == nullptr) r.bytes[i] = 0;
        r.bytes[i] = std::min(r.bytes[i], left);
        left -= r.bytes[i];
        total += r.bytes[i];
    }
    if (total == 0) return;
    // Enough threads that each issues a few dozen prefetches: 16 blocks of 256 cover 24 MB in ~48 lines each.
    const size_t lines = (total + kLine - 1) / kLine;
    const unsigned blocks = unsigned(std::min<size_t>(16, (lines + kPrefetchThreads * 32 - 1) / (kPrefetchThreads * 32)));
    launch_pdl(be.compute_capability(), be.stream(), prefetch_l2_kernel, dim3(std::max(blocks, 1u)),
               dim3(kPrefetchThreads), 0, r);
}

}  // namespace cuda
}  // namespace qwen3vl
