// One block per token (grid-stride over tokens): the block computes the token's cos / sin table into shared memory
// once, then each warp takes whole head rows (norm statistics by warp reduction, rotation over pairs i, i + D/2).
// The arithmetic lives in rope_impl.cuh (explicitly rounded f32, as the CPU reference), shared with the decoding
// attention kernel that fuses this prologue.
#include <algorithm>

#include "common.cuh"
#include "rope.cuh"
#include "rope_impl.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

constexpr unsigned kBlock = 256;
constexpr unsigned kQkBlock = 128;  // qk_norm_rope_kv: 4 head rows per block

__global__ void qk_norm_rope_kv_kernel(QkNormRopeKv a) {
    extern __shared__ float cs[];  // cos[half], sin[half]
    const int64_t D = a.head_dim, half = D / 2, T = a.tokens;
    float* c = cs;
    float* s = cs + half;
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        for (int64_t i = threadIdx.x; i < half; i += blockDim.x) rope::mrope_cos_sin(a, t, i, &c[i], &s[i]);
        __syncthreads();
        // Launched as PDL: the cos/sin table above (positions are an input of the step, never written by the kernel
        // just before) overlaps the end of the q/k/v projection; q, k, v and the caches are touched only after this.
        pdl_wait();
        int64_t n_past;  // captured decode step: read on the device
        const bool write_cache = rope::cache_slot(a, &n_past, blockIdx.y == 0 && t == 0);
        const int64_t slot = n_past + t;
        // blockIdx.y picks this block's `warps` head rows (q heads first, then k heads): one row per warp, so a
        // decoding step (T = 1) spreads its rows over several blocks instead of one block looping over them.
        for (int64_t h = int64_t(blockIdx.y) * warps + warp; h < a.q_heads + a.kv_heads && h < int64_t(blockIdx.y + 1) * warps;
             h += warps) {
            const bool is_q = h < a.q_heads;
            const int64_t hk = h - a.q_heads;
            float* row = is_q ? a.q + (t * a.q_heads + h) * D : a.k + (t * a.kv_heads + hk) * D;
            const float inv = rope::row_inv_rms(row, D, a.eps, lane);
            rope::rotate_row(row, half, c, s, inv, is_q ? a.q_norm : a.k_norm, is_q ? a.q_norm_dtype : a.k_norm_dtype, lane);
            if (is_q || !write_cache) continue;
            __syncwarp();  // the rotated row is read below by other lanes
            const size_t base = size_t((slot * a.kv_heads + hk) * D);
            const float* vrow = a.v + (t * a.kv_heads + hk) * D;
            if (a.cache_dtype == QWEN3VL_DTYPE_Q8) {  // D a multiple of 32: each step of the lanes is one block
                for (int64_t d = lane; d < D; d += kWarp) {
                    rope::store_kv_q8(a.k_cache, a.k_cache_scales, base, d, row[d], lane);
                    rope::store_kv_q8(a.v_cache, a.v_cache_scales, base, d, vrow[d], lane);
                }
                continue;
            }
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
            const float f = rope::inv_freq(is_row ? j : j - quarter, half, theta);
            rope::cos_sin(__fmul_rn(is_row ? row : col, f), &c[j], &s[j]);
        }
        __syncthreads();
        for (int64_t r = warp; r < 2 * heads; r += warps)
            rope::rotate_row(qkv + (t * 3 * heads + r) * D, half, c, s, 1.0f, nullptr, QWEN3VL_DTYPE_F32, lane);
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
