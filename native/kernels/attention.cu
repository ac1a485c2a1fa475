// Attention on the CUDA backend: dispatch between three kernels, and the split-K merge they share.
//
//  - decode (attention_decode.cu): CAUSAL with at most 8 query rows per KV head (decoding, T * G <= 8): one block
//    per (KV head, key chunk) reads each K/V row once for all the group's rows, exact fp32; bandwidth-bound.
//  - flash (attention_flash.cu): everything else on sm_80+ unless the backend was created with cuda_fp32_math:
//    FlashAttention-2 on tensor cores with q, k, v and p rounded to bf16 (as transformers' bf16 SDPA) and fp32
//    accumulation and softmax.
//  - the scalar kernel below: the fp32 fallback (fp32_math prefill, GPUs before sm_80, head dims or alignments the
//    others do not take). One block of 4 warps per (query token, query head) row, keys in tiles of 64: per tile each
//    warp scores 16 keys (lanes across D, warp sum), warp 0 updates the online softmax, every thread accumulates its
//    output dimensions over the tile's V rows. q and the accumulator sit in shared memory, so any head_dim works.
//
// Every kernel takes n_past from AttentionArgs::n_past_device when set (CUDA-graph replay of the decode step): the
// launch is then sized for the largest value (a.n_past) and chunks past the actual keys write empty records.
#include <algorithm>
#include <mutex>
#include <vector>

#include "attention_impl.cuh"
#include "quant.cuh"
#include "rope.cuh"

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

// splits > 1: work item w = row * splits + s covers keys [key0 + s * chunk, key0 + (s + 1) * chunk) of its row and
// writes the split-K record (attention_impl.cuh) instead of the output. Scores are in base 2 (scale_log2).
template <class KV>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(AttentionArgs a, float scale_log2, int splits, int64_t chunk, float* partial) {
    extern __shared__ float smem[];
    const int64_t D = a.head_dim, G = a.q_heads / a.kv_heads;
    float* qs = smem;       // [D]
    float* acc = qs + D;    // [D]
    float* p = acc + D;     // [kTile]
    __shared__ float corr_s, l_s;
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const KV* K = static_cast<const KV*>(a.k);
    const KV* V = static_cast<const KV*>(a.v);
    const int64_t n_past = a.causal ? attn::runtime_n_past(a) : 0;

    for (int64_t item = blockIdx.x; item < a.tokens * a.q_heads * splits; item += gridDim.x) {
        const int64_t row = item / splits, split = item % splits;
        const int64_t t = row / a.q_heads, h = row % a.q_heads, g = h / G;
        const float* q = a.q + t * a.q_stride + h * D;
        for (int64_t d = threadIdx.x; d < D; d += kThreads) {
            qs[d] = q[d];
            acc[d] = 0.0f;
        }
        int64_t key0 = 0, key_end = n_past + t + 1;
        if (!a.causal) attn::segment_of(a, t, &key0, &key_end);
        if (splits > 1) {
            key0 += split * chunk;
            key_end = key_end < key0 + chunk ? key_end : key0 + chunk;  // may be empty: m = -inf, l = 0
        }
        float m = -INFINITY, l = 0.0f;  // meaningful in warp 0
        if (threadIdx.x == 0) l_s = 0.0f;
        __syncthreads();

        for (int64_t j0 = key0; j0 < key_end; j0 += kTile) {
            const int64_t n = key_end - j0 < kTile ? key_end - j0 : kTile;
            for (int jj = warp * kKeysPerWarp; jj < (int(warp) + 1) * kKeysPerWarp; ++jj) {
                float s = -INFINITY;
                if (jj < n) {
                    const KV* kr = K + (j0 + jj) * a.kv_stride + g * D;
                    float dot = 0.0f;
                    for (int64_t d = lane; d < D; d += kWarp) dot += qs[d] * to_f32(kr[d]);
                    s = warp_sum(dot) * scale_log2;
                }
                if (lane == 0) p[jj] = s;
            }
            __syncthreads();
            if (warp == 0) {
                const float s0 = p[lane], s1 = p[lane + kWarp];
                const float m_new = fmaxf(m, warp_max(fmaxf(s0, s1)));  // finite: every tile has a visible key
                const float corr = exp2f(m - m_new);  // 0 on the first tile (m = -inf)
                const float e0 = exp2f(s0 - m_new), e1 = exp2f(s1 - m_new);  // 0 for the masked tail
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
        __syncthreads();  // qs, acc and l_s are reused by the next row
    }
}

// out row = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s, M the largest m_s. Every row has a visible key in some
// chunk (key 0 in CAUSAL, itself in SEGMENTS), so M is finite; empty chunks (m_s = -inf) weigh 0. Warp 0 reduces
// over the splits (lanes across them) and leaves each split's weight 2^(m_s - M) / L in shared memory; then every
// thread sums its output dimensions over the splits (coalesced reads across threads). The few dependent global
// loads per thread keep this cheap next to the decode kernel it follows.
constexpr int kMergeMaxSplits = 1024;
__global__ void __launch_bounds__(kThreads)
    attention_merge_kernel(float* out, const float* partial, int64_t rows, int64_t D, int stride_splits,
                           AttentionArgs valid, int64_t chunk, bool early_trigger) {
    __shared__ float weight[kMergeMaxSplits];
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    if (early_trigger) pdl_launch_dependents();
    pdl_wait();  // launched as PDL after the kernel that writes the partials
    // Records are laid out with stride_splits per row; with n_past on the device only the first chunks hold keys.
    int splits = stride_splits;
    if (chunk > 0) {
        const int64_t used = (attn::runtime_n_past(valid) + valid.tokens + chunk - 1) / chunk;
        splits = used < stride_splits ? int(used) : stride_splits;
    }
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* part = partial + row * stride_splits * (D + 2);
        if (warp == 0) {
            float M = -INFINITY;
            for (int s = int(lane); s < splits; s += kWarp) M = fmaxf(M, part[s * (D + 2) + D]);
            M = warp_max(M);
            float L = 0.0f;
            for (int s = int(lane); s < splits; s += kWarp) {
                const float w = exp2f(part[s * (D + 2) + D] - M);
                weight[s] = w;
                L += w * part[s * (D + 2) + D + 1];
            }
            L = warp_sum(L);
            const float inv = 1.0f / L;
            for (int s = int(lane); s < splits; s += kWarp) weight[s] *= inv;
        }
        __syncthreads();
        for (int64_t d = threadIdx.x; d < D; d += kThreads) {
            float o = 0.0f;
            for (int s = 0; s < splits; ++s) o += weight[s] * part[s * (D + 2) + d];
            out[row * D + d] = o;
        }
        __syncthreads();  // weight is rewritten for the next row
    }
}

template <class KV>
void launch_scalar(CudaBackend& be, const AttentionArgs& a, float scale_log2, int splits, int64_t chunk,
                   float* partial) {
    const size_t smem = (2 * size_t(a.head_dim) + kTile) * sizeof(float);
    attention_kernel<KV><<<grid_rows(a.tokens * a.q_heads * splits), kThreads, smem, be.stream()>>>(
        a, scale_log2, splits, chunk, partial);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

void scalar_attention(CudaBackend& be, const AttentionArgs& a) {
    const int64_t rows = a.tokens * a.q_heads;
    // Split the keys when the rows alone leave SMs idle: aim at two blocks per SM, chunks of whole tiles. Sized from
    // the largest n_past, never the device value.
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
    const float sl = attn::scale_log2(a.head_dim);
    switch (a.kv_dtype) {
        case QWEN3VL_DTYPE_F16: launch_scalar<__half>(be, a, sl, splits, chunk, partial.as<float>()); break;
        case QWEN3VL_DTYPE_BF16: launch_scalar<__nv_bfloat16>(be, a, sl, splits, chunk, partial.as<float>()); break;
        default: launch_scalar<float>(be, a, sl, splits, chunk, partial.as<float>()); break;
    }
    if (splits > 1) attn::merge_partials(be, a.out, partial.as<float>(), rows, a.head_dim, splits);
}

}  // namespace

namespace attn {

void merge_partials(CudaBackend& be, float* out, const float* partial, int64_t rows, int64_t head_dim, int splits,
                    const AttentionArgs* valid, int64_t chunk) {
    require(splits >= 1 && splits <= kMergeMaxSplits, "attention: " + std::to_string(splits) + " key chunks exceed " +
                                                          std::to_string(kMergeMaxSplits));
    AttentionArgs v{};
    if (valid != nullptr && valid->n_past_device != nullptr) v = *valid;
    else chunk = 0;  // every chunk holds a record
    launch_pdl(be.compute_capability(), be.stream(), attention_merge_kernel, dim3(grid_rows(rows)), dim3(kThreads), 0,
               out, partial, rows, head_dim, splits, v, chunk, early_trigger());
}

bool early_trigger() {
    static const bool on = knob_on("QWEN3VL_PDL_EARLY_TRIGGER");
    return on;
}

bool kernel_ready(const void* kernel, int device, size_t smem_bytes, int min_arch) {
    // A handful of (kernel, device) entries: a vector (std::map's emplace trips nvcc 11.8's front end with
    // libstdc++ 12).
    struct Known {
        const void* kernel;
        int device;
        bool ok;
    };
    static std::mutex mutex;
    static std::vector<Known> known;
    std::lock_guard<std::mutex> lock(mutex);
    for (const Known& k : known)
        if (k.kernel == kernel && k.device == device) return k.ok;
    cudaFuncAttributes attr{};
    QWEN3VL_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    // ptxVersion is the virtual architecture the code was compiled for (the __CUDA_ARCH__ it saw), e.g. 80.
    bool ok = attr.ptxVersion >= min_arch;
    if (ok && smem_bytes > 48 * 1024)
        QWEN3VL_CUDA_CHECK(
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes)));
    known.push_back(Known{kernel, device, ok});
    return ok;
}

}  // namespace attn

void attention(CudaBackend& be, const AttentionArgs& a) {
    if (a.tokens * a.q_heads <= 0) return;
    be.activate();
    if (attn::decode_attention(be, a)) return;
    if (a.kv_dtype == QWEN3VL_DTYPE_Q8) {
        // A Q8 cache for the prefill kernels: its keys' rows (up to the bound when n_past is read on the device)
        // dequantized into f32 scratch, exactly (d * q), and attention over those. Prefill is compute-bound: the
        // copy costs a few microseconds per layer; the scratch lives for this call only.
        const size_t n = size_t((a.n_past + a.tokens) * a.kv_stride);
        CudaBackend::Scratch k(be, n * sizeof(float)), v(be, n * sizeof(float));
        dequantize_q8(be, k.as<float>(), QWEN3VL_DTYPE_F32, static_cast<const int8_t*>(a.k), a.k_scales, n);
        dequantize_q8(be, v.as<float>(), QWEN3VL_DTYPE_F32, static_cast<const int8_t*>(a.v), a.v_scales, n);
        AttentionArgs f = a;
        f.k = k.as<float>();
        f.v = v.as<float>();
        f.kv_dtype = QWEN3VL_DTYPE_F32;
        f.k_scales = f.v_scales = nullptr;
        attention(be, f);
        return;
    }
    if (!be.fp32_math() && be.compute_capability() >= 80 && attn::flash_attention(be, a)) return;
    scalar_attention(be, a);
}

void qk_norm_rope_attention(CudaBackend& be, const QkNormRopeKv& rope, const AttentionArgs& a) {
    if (a.tokens * a.q_heads <= 0) return;
    be.activate();
    if (attn::decode_attention(be, a, &rope)) return;
    qk_norm_rope_kv(be, rope);
    attention(be, a);
}

}  // namespace cuda
}  // namespace qwen3vl
