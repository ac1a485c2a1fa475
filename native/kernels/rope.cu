// One block per token (grid-stride over tokens): the block computes the token's cos / sin table into shared memory
// once, then each warp takes whole head rows (norm statistics by warp reduction, rotation over pairs i, i + D/2).
// Products and sums use explicitly rounded f32 operations so nvcc does not contract them into FMAs: the results
// then round as the CPU reference's separate multiplies and adds do.
#include <algorithm>

#include "common.cuh"
#include "rope.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

constexpr unsigned kBlock = 256;
constexpr unsigned kQkBlock = 128;  // qk_norm_rope_kv: 4 head rows per block

// 1 / theta^(2i / dim) rounded as native/cpu/rope.cpp's rope_inv_freq (the double power rounded once to f32).
__device__ __forceinline__ float inv_freq(int64_t i, int64_t dim, float theta) {
    const float e = __fdiv_rn(static_cast<float>(2 * i), static_cast<float>(dim));
    return __fdiv_rn(1.0f, static_cast<float>(pow(static_cast<double>(theta), static_cast<double>(e))));
}

__device__ __forceinline__ void cos_sin(float angle, float* c, float* s) {
    double sd, cd;
    sincos(static_cast<double>(angle), &sd, &cd);
    *c = static_cast<float>(cd);
    *s = static_cast<float>(sd);
}

// Rotate-half of a row whose elements are first scaled: x[i] * scale * w[i] (w NULL: no weight, scale 1).
__device__ __forceinline__ void rotate_row(float* row, int64_t half, const float* c, const float* s, float scale,
                                           const void* w, qwen3vl_dtype wt, unsigned lane) {
    for (int64_t i = lane; i < half; i += kWarp) {
        float x1 = row[i], x2 = row[i + half];
        if (w) {
            x1 = __fmul_rn(__fmul_rn(x1, scale), load_f32(w, wt, size_t(i)));
            x2 = __fmul_rn(__fmul_rn(x2, scale), load_f32(w, wt, size_t(i + half)));
        }
        row[i] = __fsub_rn(__fmul_rn(x1, c[i]), __fmul_rn(x2, s[i]));
        row[i + half] = __fadd_rn(__fmul_rn(x2, c[i]), __fmul_rn(x1, s[i]));
    }
}

__device__ __forceinline__ float row_inv_rms(const float* row, int64_t D, float eps, unsigned lane) {
    float ss = 0.0f;
    for (int64_t d = lane; d < D; d += kWarp) ss += row[d] * row[d];
    ss = warp_sum(ss);
    return 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
}

__global__ void qk_norm_rope_kv_kernel(QkNormRopeKv a) {
    extern __shared__ float cs[];  // cos[half], sin[half]
    const int64_t D = a.head_dim, half = D / 2, T = a.tokens;
    float* c = cs;
    float* s = cs + half;
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        const float pt = static_cast<float>(a.positions[t]), ph = static_cast<float>(a.positions[T + t]),
                    pw = static_cast<float>(a.positions[2 * T + t]);
        for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
            float p = pt;
            if (i % 3 == 1 && i < 3 * a.section[1]) p = ph;
            else if (i % 3 == 2 && i < 3 * a.section[2]) p = pw;
            cos_sin(__fmul_rn(p, inv_freq(i, D, a.theta)), &c[i], &s[i]);
        }
        __syncthreads();
        // Launched as PDL: the cos/sin table above (positions are an input of the step, never written by the kernel
        // just before) overlaps the end of the q/k/v projection; q, k, v and the caches are touched only after this.
        pdl_wait();
        int64_t slot = a.n_past + t;
        bool write_cache = true;
        if (a.n_past_device) {  // captured decode step: n_past lives on the device
            const int64_t n = *a.n_past_device;
            write_cache = n >= 0 && n <= a.n_past;
            slot = n + t;
            if (!write_cache && threadIdx.x == 0 && blockIdx.y == 0 && t == 0 && a.error_flag)
                *reinterpret_cast<volatile int32_t*>(a.error_flag) = CudaBackend::kNPastOutOfRange;
        }
        // blockIdx.y picks this block's `warps` head rows (q heads first, then k heads): one row per warp, so a
        // decoding step (T = 1) spreads its rows over several blocks instead of one block looping over them.
        for (int64_t h = int64_t(blockIdx.y) * warps + warp; h < a.q_heads + a.kv_heads && h < int64_t(blockIdx.y + 1) * warps;
             h += warps) {
            const bool is_q = h < a.q_heads;
            const int64_t hk = h - a.q_heads;
            float* row = is_q ? a.q + (t * a.q_heads + h) * D : a.k + (t * a.kv_heads + hk) * D;
            const float inv = row_inv_rms(row, D, a.eps, lane);
            rotate_row(row, half, c, s, inv, is_q ? a.q_norm : a.k_norm, is_q ? a.q_norm_dtype : a.k_norm_dtype, lane);
            if (is_q || !write_cache) continue;
            __syncwarp();  // the rotated row is read below by other lanes
            const size_t base = size_t((slot * a.kv_heads + hk) * D);
            const float* vrow = a.v + (t * a.kv_heads + hk) * D;
            for (int64_t d = lane; d < D; d += kWarp) {
                store_f32(a.k_cache, a.cache_dtype, base + size_t(d), row[d]);
                store_f32(a.v_cache, a.cache_dtype, base + size_t(d), vrow[d]);
            }
        }
        __syncthreads();  // the next token's table overwrites this one
    }
}

__global__ void rope_vision_kernel(float* qkv, int64_t tokens, int64_t heads, int64_t D, const int32_t* positions,
                                   float theta) {
    extern __shared__ float cs[];
    const int64_t half = D / 2, quarter = D / 4;
    float* c = cs;
    float* s = cs + half;
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
    for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
        const float row = static_cast<float>(positions[2 * t]), col = static_cast<float>(positions[2 * t + 1]);
        for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
            const bool is_row = j < quarter;
            const float f = inv_freq(is_row ? j : j - quarter, half, theta);
            cos_sin(__fmul_rn(is_row ? row : col, f), &c[j], &s[j]);
        }
        __syncthreads();
        for (int64_t r = warp; r < 2 * heads; r += warps)
            rotate_row(qkv + (t * 3 * heads + r) * D, half, c, s, 1.0f, nullptr, QWEN3VL_DTYPE_F32, lane);
        __syncthreads();
    }
}

}  // namespace

void qk_norm_rope_kv(CudaBackend& be, const QkNormRopeKv& a) {
    if (a.tokens <= 0) return;
    be.activate();
    const size_t smem = size_t(a.head_dim) * sizeof(float);
    constexpr unsigned kRowsPerBlock = kQkBlock / kWarp;
    const unsigned groups = unsigned((a.q_heads + a.kv_heads + kRowsPerBlock - 1) / kRowsPerBlock);
    launch_pdl(be.compute_capability(), be.stream(), qk_norm_rope_kv_kernel,
               dim3(std::min<unsigned>(grid_rows(a.tokens), 65535u), groups), dim3(kQkBlock), smem, a);
}

void rope_vision(CudaBackend& be, float* qkv, int64_t tokens, int64_t heads, int64_t head_dim,
                 const int32_t* positions, float theta) {
    if (tokens <= 0) return;
    be.activate();
    const size_t smem = size_t(head_dim) * sizeof(float);
    rope_vision_kernel<<<grid_rows(tokens), kBlock, smem, be.stream()>>>(qkv, tokens, heads, head_dim, positions,
                                                                          theta);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace qwen3vl
