// Attention for few query rows (decoding): CAUSAL with R = T * G <= 8 query rows per KV head (G = Hq / Hkv, the
// group sharing a KV head). Bandwidth-bound on the KV cache, so the aim is to read every K/V row exactly once, with
// wide loads, from enough blocks to keep all SMs' loads in flight:
//
//  - one block of 4 warps per (KV head, key chunk); the chunks (split-K, whole sub-tiles of 64 keys) are sized so the
//    grid holds about two blocks per SM, and attention.cu's merge kernel combines their records;
//  - the block's R query rows (all G heads and all T tokens) sit in shared memory as f32, so each K/V row is read once
//    for all of them;
//  - per sub-tile of 64 keys: scores (8 lanes per key row, 16-byte loads: 4 key rows per warp instruction, each a
//    contiguous span; dot products finished with 3 shuffles), the online-softmax update of each row (one warp per
//    row), then p * V with the lanes across a V row (16-byte loads again) and the key rows spread over the warps;
//  - exact fp32 arithmetic (no tensor cores: they would not make a bandwidth-bound kernel faster), so this path also
//    serves the fp32_math backend.
//
// Launch shape depends only on a.n_past (the largest n_past when it is read from the device): chunks beyond the
// actual keys write empty records (m = -inf, l = 0).
#include <algorithm>
#include <type_traits>

#include "attention_impl.cuh"
#include "rope.h"  // cpu::rope_inv_freq
#include "rope_impl.cuh"

namespace qwen3vl {
namespace cuda {
namespace attn {
namespace {

constexpr int kDecWarps = 4;
constexpr int kDecThreads = kDecWarps * 32;
constexpr int kSub = 64;     // keys per sub-tile (scores in shared memory)
constexpr int kMaxDim = 128;  // head_dim limit of this path
// V rows per thread and sub-tile: kSub / (key slots of the block), the slots being kDecWarps * 32 / L with L >= the
// 16-byte pieces of a row; at most 16 (L = 32: f32 rows of 128).
constexpr int kMaxVRows = kSub / kDecWarps;

// kRope: the M-RoPE inverse frequencies, computed once on the host (cpu::rope_inv_freq) instead of a double power
// per slot in every block.
struct RopeFreq {
    float inv[kMaxDim / 2];
};

// 16 bytes of a K/V row as E floats.
template <class KV>
struct Vec16;
template <>
struct Vec16<float> {
    static constexpr int E = 4;
    float4 raw;
    __device__ __forceinline__ void load(const float* p, const unsigned short*, int64_t e) {
        raw = __ldg(reinterpret_cast<const float4*>(p + e));
    }
    __device__ __forceinline__ void load_plain(const float* p, const unsigned short*, int64_t e) {
        raw = *reinterpret_cast<const float4*>(p + e);
    }
    static __device__ __forceinline__ float from_f32(float v) { return v; }
    __device__ __forceinline__ void zero() { raw = make_float4(0.0f, 0.0f, 0.0f, 0.0f); }
    __device__ __forceinline__ void to_f32(float (&f)[E]) const {
        f[0] = raw.x;
        f[1] = raw.y;
        f[2] = raw.z;
        f[3] = raw.w;
    }
};
template <>
struct Vec16<__nv_bfloat16> {
    static constexpr int E = 8;
    uint4 raw;
    __device__ __forceinline__ void load(const __nv_bfloat16* p, const unsigned short*, int64_t e) {
        raw = __ldg(reinterpret_cast<const uint4*>(p + e));
    }
    __device__ __forceinline__ void load_plain(const __nv_bfloat16* p, const unsigned short*, int64_t e) {
        raw = *reinterpret_cast<const uint4*>(p + e);
    }
    static __device__ __forceinline__ __nv_bfloat16 from_f32(float v) { return __float2bfloat16_rn(v); }
    __device__ __forceinline__ void zero() { raw = make_uint4(0u, 0u, 0u, 0u); }
    __device__ __forceinline__ void to_f32(float (&f)[E]) const {
        const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            f[2 * i] = __uint_as_float(w[i] << 16);  // bf16 is the high half of a f32
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};
template <>
struct Vec16<__half> {
    static constexpr int E = 8;
    uint4 raw;
    __device__ __forceinline__ void load(const __half* p, const unsigned short*, int64_t e) {
        raw = __ldg(reinterpret_cast<const uint4*>(p + e));
    }
    __device__ __forceinline__ void load_plain(const __half* p, const unsigned short*, int64_t e) {
        raw = *reinterpret_cast<const uint4*>(p + e);
    }
    static __device__ __forceinline__ __half from_f32(float v) { return __float2half_rn(v); }
    __device__ __forceinline__ void zero() { raw = make_uint4(0u, 0u, 0u, 0u); }
    __device__ __forceinline__ void to_f32(float (&f)[E]) const {
        const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 v = __half22float2(h[i]);
            f[2 * i] = v.x;
            f[2 * i + 1] = v.y;
        }
    }
};

// A Q8 cache (int8_t stands for it): 8 int8 values of a row (8 bytes: E = 8 as for the 16-bit caches, so the
// lane layout is theirs) and the f16 scale of their block, the element at offset e having its scale at s[e / 32].
// to_f32 is exact (an f16 times an int8).
template <>
struct Vec16<int8_t> {
    static constexpr int E = 8;
    uint2 raw;
    float scale;
    __device__ __forceinline__ void load(const int8_t* p, const unsigned short* s, int64_t e) {
        raw = __ldg(reinterpret_cast<const uint2*>(p + e));
        scale = __half2float(__ushort_as_half(__ldg(s + e / 32)));
    }
    __device__ __forceinline__ void load_plain(const int8_t* p, const unsigned short* s, int64_t e) {
        raw = *reinterpret_cast<const uint2*>(p + e);
        scale = __half2float(__ushort_as_half(s[e / 32]));
    }
    __device__ __forceinline__ void zero() {
        raw = make_uint2(0u, 0u);
        scale = 0.0f;
    }
    __device__ __forceinline__ void to_f32(float (&f)[E]) const {
#pragma unroll
        for (int i = 0; i < E; ++i)
            f[i] = scale * static_cast<float>(static_cast<int8_t>((i < 4 ? raw.x : raw.y) >> (8 * (i % 4))));
    }
};

// R: the block's query rows rounded up to 1, 2, 4 or 8 (rows beyond T * G are zero and never written). splits > 1:
// block (g, s) covers keys [s * chunk, (s + 1) * chunk) and writes split-K records; else it writes the output.
// kRope: the qk_norm_rope_kv prologue (rp, rope_impl.cuh) is fused in: a.q holds the raw q rows, which every block
// normalises and rotates for itself in shared memory; the new tokens' k / v rows (keys n_past .. n_past + T - 1)
// are normalised and rotated by the block whose chunk holds them, rounded to the cache dtype, written to the cache
// and read from shared memory by that block (a cache row written by this kernel is never read back through the
// non-coherent load path).
template <class KV, int R, bool kRope>
__global__ void __launch_bounds__(kDecThreads)
    attention_decode_kernel(AttentionArgs a, QkNormRopeKv rp, RopeFreq freq, float scale_log2, int splits,
                            int chunk, float* partial, bool early_trigger) {
    using Vec = Vec16<KV>;
    constexpr int E = Vec::E;
    constexpr bool kQ8 = std::is_same<KV, int8_t>::value;  // a Q8 cache: int8 values and a scale plane
    constexpr int kChunksPerLane = kMaxDim / E / 8;  // 16-byte pieces of a K row per lane (8 lanes per row)
    extern __shared__ float4 decode_smem[];
    const int D = static_cast<int>(a.head_dim), C = D / E;  // C: 16-byte pieces per row, at most 32
    float* const q_s = reinterpret_cast<float*>(decode_smem);  // [R][D]
    float* const sc = q_s + R * D;                               // [R][kSub]: scores, then p
    float* const red = sc + R * kSub;                            // [kDecWarps][R][D]
    // kRope: the new tokens' k and v rows in the cache dtype, [T][D] each (room for R rows of f32).
    KV* const k_new = reinterpret_cast<KV*>(red + kDecWarps * R * D);
    KV* const v_new = reinterpret_cast<KV*>(red + (kDecWarps + 1) * R * D);
    // Q8: the new rows' block scales after their int8 values, in the same room ([T][D / 32] each).
    unsigned short* const k_new_s = reinterpret_cast<unsigned short*>(reinterpret_cast<char*>(k_new) + R * D);
    unsigned short* const v_new_s = reinterpret_cast<unsigned short*>(reinterpret_cast<char*>(v_new) + R * D);
    __shared__ float m_s[R], l_s[R], corr_s[R];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int G = static_cast<int>(a.q_heads / a.kv_heads);
    const int rows = static_cast<int>(a.tokens) * G;
    const int g = blockIdx.x / splits, split = blockIdx.x % splits;
    const int T = static_cast<int>(a.tokens), half = D / 2;
    if (early_trigger) pdl_launch_dependents();
    float* const table = red;  // kRope, until the main loop: per token cos[half], sin[half]
    if constexpr (kRope) {     // positions are an input of the step, never written by the kernel just before
        for (int i = tid; i < T * half; i += kDecThreads) {
            const int t = i / half, j = i - t * half;
            rope::mrope_cos_sin(rp, t, j, freq.inv[j], &table[t * D + j], &table[t * D + half + j]);
        }
    }
    // Launched as PDL: only the launch (and the rotary table) overlaps the kernel before, which writes q (and, unfused,
    // the new cache row).
    pdl_wait();
    const int64_t n_past = runtime_n_past(a);
    bool write_cache = false;
    if constexpr (kRope) {
        int64_t raw;
        write_cache = rope::cache_slot(rp, &raw, blockIdx.x == 0);
    }
    const int64_t lo = int64_t(split) * chunk;
    const int64_t kv_end = n_past + a.tokens;
    const int64_t hi = kv_end < lo + chunk ? kv_end : lo + chunk;  // keys of this block: [lo, hi)
    // A chunk past this run's keys (the launch is sized for the largest n_past): no work and no record; the merge
    // reads only the chunks that hold keys.
    if (splits > 1 && lo >= kv_end) return;
    const KV* const K = static_cast<const KV*>(a.k) + int64_t(g) * D;
    const KV* const V = static_cast<const KV*>(a.v) + int64_t(g) * D;
    // Q8: the scale planes from the same head (offsets from K / V then index them by offset / 32); unused otherwise.
    const unsigned short* const Ks = kQ8 ? a.k_scales + int64_t(g) * D / 32 : nullptr;
    const unsigned short* const Vs = kQ8 ? a.v_scales + int64_t(g) * D / 32 : nullptr;

    for (int i = tid; i < R * D; i += kDecThreads) {
        const int r = i / D, d = i - r * D;
        float v = 0.0f;
        if (r < rows) v = a.q[(r / G) * a.q_stride + int64_t(g * G + r % G) * D + d];
        q_s[i] = v;
    }
    if (tid < R) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
    }
    if constexpr (kRope) {
        __syncthreads();  // q_s and the table are complete
        // q: RMSNorm + rotation of each row in place (one warp per row).
        for (int r = warp; r < rows; r += kDecWarps) {
            const float* tab = table + (r / G) * D;
            float* row = q_s + r * D;
            const float inv = rope::row_inv_rms(row, D, rp.eps, lane);
            rope::rotate_row(row, half, tab, tab + half, inv, rp.q_norm, rp.q_norm_dtype, lane);
        }
        // The new keys of this chunk: k normalised and rotated (f32 scratch after the table), k and v rounded to the
        // cache dtype into shared memory and the cache. Token t on warp kDecWarps - 1 - t (mod kDecWarps): the q rows
        // above start at warp 0, so with few rows both run side by side.
        for (int t = kDecWarps - 1 - warp; t < T; t += kDecWarps) {
            const int64_t key = n_past + t;
            if (key < lo || key >= hi) continue;
            const float* tab = table + t * D;
            float* row = red + (R + t) * D;
            const float* ksrc = rp.k + (int64_t(t) * a.kv_heads + g) * D;
            const float* vsrc = rp.v + (int64_t(t) * a.kv_heads + g) * D;
            for (int d = lane; d < D; d += 32) {
                row[d] = ksrc[d];
                if constexpr (kQ8) {  // D a multiple of 32: each step of the lanes is one block
                    const rope::Q8Lane vq = rope::kv_q8_lane(vsrc[d]);
                    v_new[t * D + d] = vq.q;
                    if (lane == 0) v_new_s[(t * D + d) / 32] = vq.d;
                } else {
                    v_new[t * D + d] = Vec::from_f32(vsrc[d]);
                }
            }
            __syncwarp();
            const float inv = rope::row_inv_rms(row, D, rp.eps, lane);
            rope::rotate_row(row, half, tab, tab + half, inv, rp.k_norm, rp.k_norm_dtype, lane);
            __syncwarp();
            const int64_t base = (key * a.kv_heads + g) * D;
            for (int d = lane; d < D; d += 32) {
                if constexpr (kQ8) {
                    const rope::Q8Lane kq = rope::kv_q8_lane(row[d]);
                    k_new[t * D + d] = kq.q;
                    if (lane == 0) k_new_s[(t * D + d) / 32] = kq.d;
                    if (write_cache) {
                        static_cast<int8_t*>(rp.k_cache)[base + d] = kq.q;
                        static_cast<int8_t*>(rp.v_cache)[base + d] = v_new[t * D + d];
                        if (lane == 0) {
                            rp.k_cache_scales[(base + d) / 32] = kq.d;
                            rp.v_cache_scales[(base + d) / 32] = v_new_s[(t * D + d) / 32];
                        }
                    }
                } else {
                    const KV kq = Vec::from_f32(row[d]);
                    k_new[t * D + d] = kq;
                    if (write_cache) {
                        static_cast<KV*>(rp.k_cache)[base + d] = kq;
                        static_cast<KV*>(rp.v_cache)[base + d] = v_new[t * D + d];
                    }
                }
            }
        }
    }
    // Row r (token r / G) sees keys up to n_past + r / G; those from hi on belong to other chunks; rows past T * G
    // see none.
    int64_t row_end[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int64_t e = n_past + r / G + 1;
        row_end[r] = r < rows ? (e < hi ? e : hi) : 0;
    }
    // Phase 3 layout: L lanes across a V row (C of them load), 32 / L key slots per warp.
    int L = 1;
    while (L < C) L <<= 1;
    const int ll = lane % L, slot = warp * (32 / L) + lane / L, slots = kDecWarps * (32 / L);
    float acc[R][E];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int e = 0; e < E; ++e) acc[r][e] = 0.0f;
    __syncthreads();

    for (int64_t k0 = lo; k0 < hi; k0 += kSub) {
        // Scores: lanes 8 * kg .. 8 * kg + 7 share key row k0 + 16 u + 4 warp + kg; all loads first.
        {
            const int kg = lane >> 3, sl = lane & 7;
            Vec kv[4][kChunksPerLane];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int64_t key = k0 + u * 16 + warp * 4 + kg;
#pragma unroll
                for (int c = 0; c < kChunksPerLane; ++c) {
                    const int piece = sl + 8 * c;
                    if (key < hi && piece < C) {
                        if (kRope && key >= n_past) kv[u][c].load_plain(k_new, k_new_s, (key - n_past) * D + piece * E);
                        else kv[u][c].load(K, Ks, key * a.kv_stride + piece * E);
                    } else {
                        kv[u][c].zero();
                    }
                }
            }
            // Dot products, piece by piece: each q piece is read from shared memory once for the four key rows.
            float dot[4][R];
#pragma unroll
            for (int u = 0; u < 4; ++u)
#pragma unroll
                for (int r = 0; r < R; ++r) dot[u][r] = 0.0f;
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
                const int piece = sl + 8 * c;
                if (piece < C) {
                    float kf[4][E];
#pragma unroll
                    for (int u = 0; u < 4; ++u) kv[u][c].to_f32(kf[u]);
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const float4* qp = reinterpret_cast<const float4*>(q_s + r * D + piece * E);
#pragma unroll
                        for (int e4 = 0; e4 < E / 4; ++e4) {
                            const float4 qv = qp[e4];
#pragma unroll
                            for (int u = 0; u < 4; ++u)
                                dot[u][r] += qv.x * kf[u][4 * e4] + qv.y * kf[u][4 * e4 + 1] +
                                             qv.z * kf[u][4 * e4 + 2] + qv.w * kf[u][4 * e4 + 3];
                        }
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int j = u * 16 + warp * 4 + kg;
                const int64_t key = k0 + j;
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    float s = dot[u][r];
                    s += __shfl_xor_sync(0xffffffffu, s, 4);
                    s += __shfl_xor_sync(0xffffffffu, s, 2);
                    s += __shfl_xor_sync(0xffffffffu, s, 1);
                    if (sl == 0) sc[r * kSub + j] = key < row_end[r] ? s * scale_log2 : -INFINITY;
                }
            }
        }
        // This thread's V pieces of the sub-tile (key rows slot, slot + slots, ...; zeros past hi, where the cache
        // may hold anything), loaded now so that they arrive during the softmax.
        Vec vv[kMaxVRows];
#pragma unroll
        for (int i = 0; i < kMaxVRows; ++i) {
            const int j = slot + i * slots;
            const int64_t key = k0 + j;
            if (ll < C && j < kSub && key < hi) {
                if (kRope && key >= n_past) vv[i].load_plain(v_new, v_new_s, (key - n_past) * D + ll * E);
                else vv[i].load(V, Vs, key * a.kv_stride + ll * E);
            } else {
                vv[i].zero();
            }
        }
        __syncthreads();
        // Online softmax, one warp per row: p = 2^(s - m_new) in place of the scores, l and the rescale factor.
        for (int r = warp; r < R; r += kDecWarps) {
            const float s0 = sc[r * kSub + lane], s1 = sc[r * kSub + lane + 32];
            const float m_old = m_s[r];
            const float m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no visible key yet: p = 0, not NaN
            const float p0 = exp2f(s0 - m_use), p1 = exp2f(s1 - m_use);
            sc[r * kSub + lane] = p0;
            sc[r * kSub + lane + 32] = p1;
            const float sum = warp_sum(p0 + p1);
            __syncwarp();  // every lane's read of m_s[r] / l_s[r] is ordered before lane 0 rewrites them
            if (lane == 0) {
                const float corr = exp2f(m_old - m_use);
                m_s[r] = m_new;
                l_s[r] = l_s[r] * corr + sum;
                corr_s[r] = corr;
            }
        }
        __syncthreads();
        // acc += p * V (masked keys have p = 0).
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float cr = corr_s[r];
#pragma unroll
            for (int e = 0; e < E; ++e) acc[r][e] *= cr;
        }
#pragma unroll
        for (int i = 0; i < kMaxVRows; ++i) {
            const int j = slot + i * slots;
            if (j < kSub) {
                float vf[E];
                vv[i].to_f32(vf);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const float p = sc[r * kSub + j];
#pragma unroll
                    for (int e = 0; e < E; ++e) acc[r][e] += p * vf[e];
                }
            }
        }
        __syncthreads();  // sc is rewritten by the next sub-tile
    }

    // Sum the key slots: first the slots of a warp (lanes with the same ll), then the warps through shared memory.
    for (int off = L; off < 32; off <<= 1)
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int e = 0; e < E; ++e) acc[r][e] += __shfl_xor_sync(0xffffffffu, acc[r][e], off);
    if (lane < L && ll < C)
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int e = 0; e < E; ++e) red[(warp * R + r) * D + ll * E + e] = acc[r][e];
    __syncthreads();
    for (int i = tid; i < rows * D; i += kDecThreads) {
        const int r = i / D, d = i - r * D;
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < kDecWarps; ++w) o += red[(w * R + r) * D + d];
        const int64_t row = (r / G) * a.q_heads + g * G + r % G;  // t * Hq + h
        if (splits == 1) {
            a.out[row * D + d] = o / l_s[r];
        } else {
            float* rec = partial + (row * splits + split) * (D + 2);
            rec[d] = o;
            if (d == 0) {
                rec[D] = m_s[r];
                rec[D + 1] = l_s[r];
            }
        }
    }
}

template <class KV, int R, bool kRope>
void launch(CudaBackend& be, const AttentionArgs& a, const QkNormRopeKv& rp, int splits, int chunk, float* partial) {
    const size_t smem = size_t(R) * ((kRope ? 7 : 5) * size_t(a.head_dim) + kSub) * sizeof(float);
    const unsigned grid = static_cast<unsigned>(a.kv_heads * splits);
    RopeFreq freq{};
    if (kRope) cpu::rope_inv_freq(freq.inv, rp.head_dim, rp.theta);
    launch_pdl(be.compute_capability(), be.stream(), attention_decode_kernel<KV, R, kRope>, dim3(grid),
               dim3(kDecThreads), smem, a, rp, freq, scale_log2(a.head_dim), splits, chunk, partial, early_trigger());
}

template <class KV, bool kRope>
void launch_rows(CudaBackend& be, const AttentionArgs& a, const QkNormRopeKv& rp, int64_t rows, int splits, int chunk,
                 float* partial) {
    if (rows <= 1) launch<KV, 1, kRope>(be, a, rp, splits, chunk, partial);
    else if (rows <= 2) launch<KV, 2, kRope>(be, a, rp, splits, chunk, partial);
    else if (rows <= 4) launch<KV, 4, kRope>(be, a, rp, splits, chunk, partial);
    else launch<KV, 8, kRope>(be, a, rp, splits, chunk, partial);
}

template <class KV>
void launch_rows(CudaBackend& be, const AttentionArgs& a, const QkNormRopeKv* rope, int64_t rows, int splits,
                 int chunk, float* partial) {
    if (rope != nullptr) launch_rows<KV, true>(be, a, *rope, rows, splits, chunk, partial);
    else launch_rows<KV, false>(be, a, QkNormRopeKv{}, rows, splits, chunk, partial);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool decode_attention(CudaBackend& be, const AttentionArgs& a, const QkNormRopeKv* rope) {
    static_assert(kDecodeRows == 8, "the kernel is instantiated for up to 8 rows");
    if (!a.causal) return false;
    const int64_t G = a.q_heads / a.kv_heads, rows = a.tokens * G;
    if (rows > kDecodeRows) return false;
    // Bytes per element, and elements per load (16 bytes; 8 int8 values of a Q8 cache).
    const bool q8 = a.kv_dtype == QWEN3VL_DTYPE_Q8;
    const int64_t esize = a.kv_dtype == QWEN3VL_DTYPE_F32 ? 4 : q8 ? 1 : 2;
    const int64_t E = q8 ? 8 : 16 / esize;
    if (a.head_dim % E != 0 || a.head_dim > kMaxDim) return false;
    if (rope != nullptr && (rope->head_dim != a.head_dim || rope->tokens != a.tokens || rope->head_dim % 2 != 0 ||
                            rope->cache_dtype != a.kv_dtype || rope->k_cache != a.k || rope->v_cache != a.v))
        return false;
    if (!aligned16(a.k) || !aligned16(a.v) || (a.kv_stride * esize) % (E * esize) != 0) return false;

    // Chunks of whole sub-tiles, about two blocks per SM over the KV heads; sized from the largest n_past. With
    // n_past read on the device that largest value is the cache capacity, so a chunk is also capped at
    // kMaxChunkKeys: a short conversation in a long context then still spreads its keys over several blocks (blocks
    // past the actual keys exit at once), instead of one block per KV head walking a capacity-sized chunk. At most
    // kMaxSplits chunks (what the merge takes).
    constexpr int64_t kMaxChunkKeys = 4 * kSub, kMaxSplits = 1024;
    const int64_t keys = a.n_past + a.tokens;
    const int64_t want = std::max<int64_t>(1, (2 * int64_t(be.multiprocessors()) + a.kv_heads - 1) / a.kv_heads);
    int64_t chunk = std::max<int64_t>(kSub, ((keys + want - 1) / want + kSub - 1) / kSub * kSub);
    static const bool cap_chunks = knob_on("QWEN3VL_ATTENTION_CHUNK_CAP");  // =0: no cap (before/after timings)
    if (a.n_past_device && cap_chunks) {
        chunk = std::min(chunk, kMaxChunkKeys);
        chunk = std::max(chunk, ((keys + kMaxSplits - 1) / kMaxSplits + kSub - 1) / kSub * kSub);
    }
    const int64_t splits = (keys + chunk - 1) / chunk;
    require(chunk < (int64_t(1) << 30) && a.kv_heads * splits < (int64_t(1) << 31),
            "attention: KV cache too large for the decode kernel");
    CudaBackend::Scratch partial(be, splits > 1 ? size_t(a.tokens * a.q_heads * splits * (a.head_dim + 2)) * 4 : 0);
    float* part = partial.as<float>();
    switch (a.kv_dtype) {
        case QWEN3VL_DTYPE_F16: launch_rows<__half>(be, a, rope, rows, int(splits), int(chunk), part); break;
        case QWEN3VL_DTYPE_BF16: launch_rows<__nv_bfloat16>(be, a, rope, rows, int(splits), int(chunk), part); break;
        case QWEN3VL_DTYPE_Q8: launch_rows<int8_t>(be, a, rope, rows, int(splits), int(chunk), part); break;
        default: launch_rows<float>(be, a, rope, rows, int(splits), int(chunk), part); break;
    }
    if (splits > 1) merge_partials(be, a.out, part, a.tokens * a.q_heads, a.head_dim, int(splits), &a, chunk);
    return true;
}

}  // namespace attn
}  // namespace cuda
}  // namespace qwen3vl
