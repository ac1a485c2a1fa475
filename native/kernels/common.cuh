// Shared by every CUDA op: error checking that turns CUDA and cuBLAS failures into qwen3vl::Error, launch helpers,
// element loads of any float dtype as f32, and warp / block reductions.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <string>
#include <utility>

#include "error.h"
#include "qwen3vl.h"

namespace qwen3vl {
namespace cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
    cudaGetLastError();  // reset the last (non-sticky) error so later calls on this thread start clean
    const qwen3vl_status status =
        err == cudaErrorMemoryAllocation ? QWEN3VL_STATUS_OUT_OF_MEMORY : QWEN3VL_STATUS_DEVICE_ERROR;
    fail(status, std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") at " +
                     file + ":" + std::to_string(line));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t st, const char* what, const char* file, int line) {
    const qwen3vl_status status =
        st == CUBLAS_STATUS_ALLOC_FAILED ? QWEN3VL_STATUS_OUT_OF_MEMORY : QWEN3VL_STATUS_DEVICE_ERROR;
    fail(status, std::string(what) + " failed: cuBLAS status " + std::to_string(static_cast<int>(st)) + " at " + file +
                     ":" + std::to_string(line));
}

#define QWEN3VL_CUDA_CHECK(call)                                                                      \
    do {                                                                                               \
        cudaError_t qwen3vl_err_ = (call);                                                             \
        if (qwen3vl_err_ != cudaSuccess) ::qwen3vl::cuda::throw_cuda_error(qwen3vl_err_, #call, __FILE__, __LINE__); \
    } while (0)

#define QWEN3VL_CUBLAS_CHECK(call)                                                                    \
    do {                                                                                               \
        cublasStatus_t qwen3vl_st_ = (call);                                                           \
        if (qwen3vl_st_ != CUBLAS_STATUS_SUCCESS)                                                      \
            ::qwen3vl::cuda::throw_cublas_error(qwen3vl_st_, #call, __FILE__, __LINE__);               \
    } while (0)

// After a launch: a bad configuration shows here, a fault in the kernel at the next synchronisation.
#define QWEN3VL_CUDA_CHECK_LAUNCH() QWEN3VL_CUDA_CHECK(cudaGetLastError())

// Blocks for a 1-D grid-stride launch over n elements, capped so a launch never exceeds the grid limit.
inline unsigned grid_for(size_t n, unsigned block) {
    size_t blocks = (n + block - 1) / block;
    if (blocks < 1) blocks = 1;
    if (blocks > 65535u * 32u) blocks = 65535u * 32u;
    return static_cast<unsigned>(blocks);
}

// Grid dimension for one block per row, capped at the 1-D limit (kernels loop over rows by gridDim.x).
inline unsigned grid_rows(int64_t rows) {
    return static_cast<unsigned>(rows < 1 ? 1 : (rows > 0x7fffffff ? 0x7fffffff : rows));
}

constexpr unsigned kWarp = 32;

// Programmatic dependent launch (sm_90): a kernel launched with launch_pdl() may start while the kernel before it in
// the stream is still finishing. It must call pdl_wait() before it reads anything that kernel wrote (or writes
// anything); the work before the call (address math, first weight loads) overlaps the previous kernel's tail and the
// launch latency. pdl_launch_dependents() lets the next PDL kernel be scheduled early. Both are no-ops before sm_90
// and when the kernel was launched normally.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent launch where the device supports
// it (compute capability >= 9.0), else normally. The kernel must follow the pdl_wait() rule above.
template <class... Params, class... Args>
void launch_pdl(int compute_capability, cudaStream_t stream, void (*kernel)(Params...), dim3 grid, dim3 block,
                size_t smem, Args&&... args) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = compute_capability >= 90 ? 1 : 0;
    QWEN3VL_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

// Hash and equality of a cache key made of plain fields without padding, over its bytes (FNV-1a). std::map is
// avoided here: <map> does not compile under nvcc 11.8 with clang and libstdc++ 12.
template <class Key>
struct BytesHash {
    static_assert(std::has_unique_object_representations_v<Key>, "key with padding bytes");
    size_t operator()(const Key& k) const {
        unsigned char bytes[sizeof(Key)];
        std::memcpy(bytes, &k, sizeof(Key));
        uint64_t h = 1469598103934665603ull;
        for (unsigned char b : bytes) h = (h ^ b) * 1099511628211ull;
        return size_t(h);
    }
};
template <class Key>
struct BytesEqual {
    bool operator()(const Key& a, const Key& b) const { return std::memcmp(&a, &b, sizeof(Key)) == 0; }
};

// A measurement knob (before/after timings): false when the environment variable `name` is "0", else true. Host-only;
// callers keep the answer in a static, so it is read once.
inline bool knob_on(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr || std::string(v) != "0";
}

// Element i of a f32 / f16 / bf16 array as f32 (exact widening).
__device__ __forceinline__ float load_f32(const void* p, qwen3vl_dtype t, size_t i) {
    if (t == QWEN3VL_DTYPE_BF16) return __uint_as_float(static_cast<unsigned>(static_cast<const unsigned short*>(p)[i]) << 16);
    if (t == QWEN3VL_DTYPE_F16) return __half2float(static_cast<const __half*>(p)[i]);
    return static_cast<const float*>(p)[i];
}

// f32 rounded to nearest even into a f32 / f16 / bf16 array.
__device__ __forceinline__ void store_f32(void* p, qwen3vl_dtype t, size_t i, float v) {
    if (t == QWEN3VL_DTYPE_BF16) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    else if (t == QWEN3VL_DTYPE_F16) static_cast<__half*>(p)[i] = __float2half_rn(v);
    else static_cast<float*>(p)[i] = v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread. `shared` holds 32
// floats; the call may be repeated with the same buffer.
__device__ __forceinline__ float block_sum(float v, float* shared) {
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
    v = warp_sum(v);
    __syncthreads();  // a previous use of `shared` is finished
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* shared) {
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : -INFINITY;
    return warp_max(v);
}

// Threads per block for a per-row op over n elements: enough warps to cover the row once, 32..max_threads.
inline unsigned row_block(int64_t n, unsigned max_threads = 256) {
    unsigned b = 32;
    while (b < max_threads && static_cast<int64_t>(b) < n) b *= 2;
    return b;
}

}  // namespace cuda
}  // namespace qwen3vl
