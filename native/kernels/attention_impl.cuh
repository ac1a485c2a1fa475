// Internals shared by the attention kernels: attention.cu (dispatch, the scalar kernel, the split-K merge),
// attention_flash.cu (tensor cores, prefill and vision) and attention_decode.cu (few query rows, exact fp32).
//
// Split-K record: when the keys of a query row are cut into `splits` chunks, the block of chunk s writes, for row
// r = t * Hq + h, D + 2 floats at partial + (r * splits + s) * (D + 2): the unnormalised accumulator sum_j p_j v_j,
// then m and l, with p_j = 2^(s_j - m), s_j the score times scale * log2(e) (every kernel works in base 2) and
// l = sum_j p_j. A chunk holding no visible key of the row writes acc = 0, m = -inf, l = 0.
#pragma once

#include <cstdint>

#include "attention.cuh"
#include "common.cuh"

namespace qwen3vl {
namespace cuda {
namespace attn {

constexpr double kLog2e = 1.4426950408889634;

// The scale of every kernel: scores times 1/sqrt(D) times log2(e), so that exp(x) becomes exp2f(x').
inline float scale_log2(int64_t head_dim) {
    return static_cast<float>(kLog2e / std::sqrt(static_cast<double>(head_dim)));
}

// n_past of this run: a.n_past, or (graph replay) the device value clamped to 0 .. a.n_past.
__device__ __forceinline__ int64_t runtime_n_past(const AttentionArgs& a) {
    if (a.n_past_device == nullptr) return a.n_past;
    const int64_t v = __ldg(a.n_past_device);
    return v < 0 ? 0 : (v > a.n_past ? a.n_past : v);
}

// SEGMENTS: the keys [*lo, *hi) of query token t (its own segment), by bisection on the cumulative offsets.
__device__ __forceinline__ void segment_of(const AttentionArgs& a, int64_t t, int64_t* lo, int64_t* hi) {
    int64_t a0 = 0, a1 = a.n_segments + 1;  // first offset greater than t
    while (a0 < a1) {
        const int64_t mid = (a0 + a1) / 2;
        if (__ldg(a.segments + mid) <= t) a0 = mid + 1;
        else a1 = mid;
    }
    *lo = __ldg(a.segments + a0 - 1);
    *hi = __ldg(a.segments + a0);
}

// Whether the decode kernel and the merge let the next kernel launch as soon as all their blocks run
// (pdl_launch_dependents at their start): the o_proj GEMV after them then streams its weights while they finish,
// instead of after. QWEN3VL_PDL_EARLY_TRIGGER=0 turns it off (a before/after measurement knob). Read once.
bool early_trigger();

// out[row] = merge of the row's `splits` records (see above); rows = T * Hq.
// valid (optional, CAUSAL with n_past read on the device): the attention's arguments; only the chunks of `chunk` keys
// that hold keys at this run's n_past are merged (the decode kernel writes no record for the others).
void merge_partials(CudaBackend& be, float* out, const float* partial, int64_t rows, int64_t head_dim, int splits,
                    const AttentionArgs* valid = nullptr, int64_t chunk = 0);

// Once per (kernel, device): raises the kernel's dynamic shared memory limit to smem_bytes when above the default
// 48 KiB, and tells whether the code loaded for this device was compiled for compute capability >= min_arch (a build
// without sm_80 code, JIT-compiled from older PTX, would run the empty body). Host-only queries: capture-safe.
bool kernel_ready(const void* kernel, int device, size_t smem_bytes, int min_arch);

// Tensor-core flash attention (bf16 operands, fp32 accumulation), sm_80+, head_dim 64 to 128 in steps of 8 (multiples
// of 16 natively, the others zero-padded to the next one: Qwen3-VL-4B/8B vision heads are 72).
// Returns false, having queued nothing, when it does not apply (shape, alignment, device, build).
bool flash_attention(CudaBackend& be, const AttentionArgs& a);

// CAUSAL with at most kDecodeRows query rows per KV head (T * Hq / Hkv): one block per (KV head, key chunk), exact
// fp32. rope (optional): the qk_norm_rope_kv prologue to fuse in (a.q then holds the raw q rows and rope->k, rope->v
// the new tokens' raw k and v; the caches are a.k / a.v); q and k are left as they were. Returns false, having
// queued nothing, when it does not apply.
constexpr int64_t kDecodeRows = 8;
bool decode_attention(CudaBackend& be, const AttentionArgs& a, const QkNormRopeKv* rope = nullptr);

}  // namespace attn
}  // namespace cuda
}  // namespace qwen3vl
