// Flash-style attention, correctness-first version: one block of 4 warps per (query token, query head) row, keys
// in tiles of 64. Per tile each warp scores 16 keys (lanes across D, coalesced K reads, warp-sum), warp 0 does the
// online-softmax update of (m, l) and the tile's probabilities, then every thread rescales and accumulates its
// own output dimensions over the tile's V rows (coalesced across threads). q and the accumulator sit in shared
// memory, so any head_dim works. Scores never leave the chip; GQA reads the shared KV head in place.
//
// Split-K: when T * Hq rows are too few to fill the GPU (decode) and the keys are many, each row's keys are cut into
// chunks of whole tiles; a block per (row, chunk) writes its unnormalised accumulator with its (m, l) to scratch,
// and a second kernel merges the chunks (weights exp(m_chunk - m_max)), as flash-decoding does.
//
// Not yet done: reusing a K/V tile across the G query heads of a group and across tokens (GQA and prefill read each
// K/V row G and T times from L2), tensor-core QK^T and PV.
#include <algorithm>

#include "attention.cuh"
#include "common.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

constexpr unsigned kThreads = 128;
constexpr int kTile = 64;
constexpr int kKeysPerWarp = kTile / (kThreads / kWarp);

template <class T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) {
    return v;
}
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) {
    return __half2float(v);
}
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

// First key and end of the keys query token t sees.
__device__ __forceinline__ void key_range(const AttentionArgs& a, int64_t t, int64_t* key0, int64_t* key_end) {
    if (a.causal) {
        *key0 = 0;
        *key_end = a.n_past + t + 1;
        return;
    }
    int64_t lo = 0, hi = a.n_segments + 1;  // first offset greater than t, by bisection
    while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (a.segments[mid] <= t) lo = mid + 1;
        else hi = mid;
    }
    *key0 = a.segments[lo - 1];
    *key_end = a.segments[lo];
}

// splits > 1: work item w = row * splits + s covers keys [key0 + s * chunk, key0 + (s + 1) * chunk) of its row and
// writes acc[D], m, l to partial + w * (D + 2) instead of the output.
template <class KV>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(AttentionArgs a, float scale, int splits, int64_t chunk, float* partial) {
    extern __shared__ float smem[];
    const int64_t D = a.head_dim, G = a.q_heads / a.kv_heads;
    float* qs = smem;       // [D]
    float* acc = qs + D;    // [D]
    float* p = acc + D;     // [kTile]
    __shared__ float corr_s, l_s;
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const KV* K = static_cast<const KV*>(a.k);
    const KV* V = static_cast<const KV*>(a.v);

    for (int64_t item = blockIdx.x; item < a.tokens * a.q_heads * splits; item += gridDim.x) {
        const int64_t row = item / splits, split = item % splits;
        const int64_t t = row / a.q_heads, h = row % a.q_heads, g = h / G;
        const float* q = a.q + t * a.q_stride + h * D;
        for (int64_t d = threadIdx.x; d < D; d += kThreads) {
            qs[d] = q[d];
            acc[d] = 0.0f;
        }
        int64_t key0, key_end;
        key_range(a, t, &key0, &key_end);
        if (splits > 1) {
            key0 += split * chunk;
            key_end = key_end < key0 + chunk ? key_end : key0 + chunk;  // may be empty: m = -inf, l = 0
        }
        float m = -INFINITY, l = 0.0f;  // meaningful in warp 0
        __syncthreads();

        for (int64_t j0 = key0; j0 < key_end; j0 += kTile) {
            const int64_t n = key_end - j0 < kTile ? key_end - j0 : kTile;
            for (int jj = warp * kKeysPerWarp; jj < (int(warp) + 1) * kKeysPerWarp; ++jj) {
                float s = -INFINITY;
                if (jj < n) {
                    const KV* kr = K + (j0 + jj) * a.kv_stride + g * D;
                    float dot = 0.0f;
                    for (int64_t d = lane; d < D; d += kWarp) dot += qs[d] * to_f32(kr[d]);
                    s = warp_sum(dot) * scale;
                }
                if (lane == 0) p[jj] = s;
            }
            __syncthreads();
            if (warp == 0) {
                const float s0 = p[lane], s1 = p[lane + kWarp];
                const float m_new = fmaxf(m, warp_max(fmaxf(s0, s1)));
                const float corr = expf(m - m_new);  // 0 on the first tile (m = -inf)
                const float e0 = expf(s0 - m_new), e1 = expf(s1 - m_new);  // 0 for the masked tail
                p[lane] = e0;
                p[lane + kWarp] = e1;
                l = l * corr + warp_sum(e0 + e1);
                m = m_new;
                if (lane == 0) {
                    corr_s = corr;
                    l_s = l;
                }
            }
            __syncthreads();
            const float corr = corr_s;
            for (int64_t d = threadIdx.x; d < D; d += kThreads) {
                float o = acc[d] * corr;
                const KV* vr = V + j0 * a.kv_stride + g * D + d;
                for (int64_t jj = 0; jj < n; ++jj) o += p[jj] * to_f32(vr[jj * a.kv_stride]);
                acc[d] = o;
            }
            __syncthreads();  // p is rewritten by the next tile
        }
        if (splits > 1) {
            float* part = partial + item * (D + 2);
            for (int64_t d = threadIdx.x; d < D; d += kThreads) part[d] = acc[d];
            if (threadIdx.x == 0) {
                part[D] = m;
                part[D + 1] = l;
            }
        } else {
            const float inv = 1.0f / l_s;
            float* o = a.out + (t * a.q_heads + h) * D;
            for (int64_t d = threadIdx.x; d < D; d += kThreads) o[d] = acc[d] * inv;
        }
        __syncthreads();  // qs and acc are reused by the next row
    }
}

// out row = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s, M the largest m_s (empty chunks have m_s = -inf).
__global__ void __launch_bounds__(kThreads)
    attention_merge_kernel(float* out, const float* partial, int64_t rows, int64_t D, int splits) {
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* part = partial + row * splits * (D + 2);
        float M = -INFINITY;
        for (int s = 0; s < splits; ++s) M = fmaxf(M, part[s * (D + 2) + D]);
        float L = 0.0f;
        for (int s = 0; s < splits; ++s) L += expf(part[s * (D + 2) + D] - M) * part[s * (D + 2) + D + 1];
        const float inv = 1.0f / L;
        for (int64_t d = threadIdx.x; d < D; d += kThreads) {
            float o = 0.0f;
            for (int s = 0; s < splits; ++s) o += expf(part[s * (D + 2) + D] - M) * part[s * (D + 2) + d];
            out[row * D + d] = o * inv;
        }
    }
}

template <class KV>
void launch(CudaBackend& be, const AttentionArgs& a, float scale, int splits, int64_t chunk, float* partial) {
    const size_t smem = (2 * size_t(a.head_dim) + kTile) * sizeof(float);
    attention_kernel<KV><<<grid_rows(a.tokens * a.q_heads * splits), kThreads, smem, be.stream()>>>(a, scale, splits,
                                                                                                  chunk, partial);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention(CudaBackend& be, const AttentionArgs& a) {
    const int64_t rows = a.tokens * a.q_heads;
    if (rows <= 0) return;
    be.activate();
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
    // Split the keys when the rows alone leave SMs idle: aim at two blocks per SM, chunks of whole tiles.
    const int64_t max_keys = a.causal ? a.n_past + a.tokens : a.tokens;
    const int64_t sms = be.multiprocessors();
    int splits = 1;
    int64_t chunk = max_keys;
    if (rows < sms && max_keys > 2 * kTile) {
        const int64_t want = std::min<int64_t>({(2 * sms + rows - 1) / rows, (max_keys + kTile - 1) / kTile, 64});
        chunk = ((max_keys + want - 1) / want + kTile - 1) / kTile * kTile;
        splits = static_cast<int>((max_keys + chunk - 1) / chunk);
    }
    CudaBackend::Scratch partial(be, splits > 1 ? size_t(rows * splits * (a.head_dim + 2)) * sizeof(float) : 0);
    switch (a.kv_dtype) {
        case QWEN3VL_DTYPE_F16: launch<__half>(be, a, scale, splits, chunk, partial.as<float>()); break;
        case QWEN3VL_DTYPE_BF16: launch<__nv_bfloat16>(be, a, scale, splits, chunk, partial.as<float>()); break;
        default: launch<float>(be, a, scale, splits, chunk, partial.as<float>()); break;
    }
    if (splits > 1) {
        attention_merge_kernel<<<grid_rows(rows), kThreads, 0, be.stream()>>>(a.out, partial.as<float>(), rows,
                                                                              a.head_dim, splits);
        QWEN3VL_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace cuda
}  // namespace qwen3vl
