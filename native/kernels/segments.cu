// One warp: a sequential prefix pass over the offsets (a handful per batch of images or video frames).
#include "common.cuh"
#include "segments.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

__global__ void sanitize_segments_kernel(int32_t* sane, const int32_t* segments, int64_t n_segments, int64_t tokens,
                                         int32_t* error_flag) {
    if (threadIdx.x != 0) return;
    bool ok = segments[0] == 0 && segments[n_segments] == tokens;
    int64_t prev = 0;
    sane[0] = 0;
    for (int64_t i = 1; i <= n_segments; ++i) {
        int64_t v = segments[i];
        if (v < prev) {
            ok = false;
            v = prev;
        }
        if (v > tokens) {
            ok = false;
            v = tokens;
        }
        sane[i] = static_cast<int32_t>(v);
        prev = v;
    }
    sane[n_segments] = static_cast<int32_t>(tokens);
    if (!ok) *reinterpret_cast<volatile int32_t*>(error_flag) = CudaBackend::kSegmentsInvalid;
}

}  // namespace

void sanitize_segments(CudaBackend& be, int32_t* sane, const int32_t* segments, int64_t n_segments, int64_t tokens) {
    be.activate();
    sanitize_segments_kernel<<<1, kWarp, 0, be.stream()>>>(sane, segments, n_segments, tokens,
                                                         be.device_error_flag());
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace qwen3vl
