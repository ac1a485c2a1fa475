// Flash attention on tensor cores (FlashAttention-2 scheme) for sm_80+: prefill against the KV cache (CAUSAL) and
// vision (SEGMENTS). q, k, v and the probabilities p are rounded to bf16 for mma.sync m16n8k16 (fp32 accumulation);
// the softmax (max, exponentials, sums, rescaling) is fp32, in base 2 with scale * log2(e) folded into one FMA. This
// is the precision of transformers' bf16 SDPA / FlashAttention (unit roundoff 2^-9 on each operand).
//
// Work split. A block of 8 warps owns 128 query rows of one KV head: the G = Hq / Hkv heads sharing that head times
// 128 / G consecutive tokens (row r: token t0 + r / G, head g * G + r % G), so every K/V tile is staged once for the
// whole group; each warp owns 16 rows (one mma M tile). 128 rows per block halve the K/V traffic per FLOP against 64
// (f32 K/V tiles are 64 KiB per tile of 64 keys at D = 128, and L2 bandwidth, not the tensor cores, would bound
// 64-row blocks); 8 warps x 16 rows rather than 4 x 32 keeps the accumulators at 64 registers per thread.
//
// Per tile of 64 keys (double-buffered in shared memory, one __syncthreads per tile):
//  - the next tile's K is loaded into registers (f32/f16/bf16 as stored; cp.async cannot convert) before this
//    tile's S = Q K^T, converted to bf16 and stored after it, so its latency hides behind the MMAs; the next V
//    likewise around P V;
//  - S = Q K^T: Q sits in registers as bf16 A fragments for the whole block (loaded once from global memory), K
//    fragments come from shared memory by ldmatrix;
//  - online softmax per row in registers (the four lanes of a row combine with two shuffles), P converted to bf16
//    A fragments straight from the S accumulators (the FA2 register-reuse trick), O += P V with V fragments by
//    ldmatrix.trans (V is stored key-major, as the cache holds it);
//  - a warp skips tiles that no row of it sees (the causal upper triangle, other segments), and masks per element
//    only tiles that are not fully visible to all its rows.
// Shared rows are padded by 8 bf16 (16 bytes): ldmatrix's 8 row addresses then fall in distinct bank groups for
// every supported D (64, 80, 96, 112, 128; 72, 88, 104 and 120 run the next of these with zero padding columns).
//
// Few blocks (short prompts after a long history): the keys are split into chunks across blocks (split-K, CAUSAL
// only) and merged by attention.cu's merge kernel; the launch depends only on the largest n_past, so a device-side
// n_past (graph replay) leaves chunks past the actual keys empty (m = -inf, l = 0).
#include <algorithm>
#include <climits>

#include "attention_impl.cuh"

namespace qwen3vl {
namespace cuda {
namespace attn {
namespace {

constexpr int kFaWarps = 8;
constexpr int kFaThreads = kFaWarps * 32;
constexpr int kFaRows = kFaWarps * 16;  // query rows per block
constexpr int kFaKeys = 64;             // keys per tile

struct FlashParams {
    float scale_log2;
    int group;             // G = Hq / Hkv
    int tokens_per_block;  // kFaRows / G
    int token_blocks;
    int splits;
    int chunk;             // splits > 1: keys per split, a multiple of kFaKeys
    float* partial;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));  // lo in the low half
    return r;
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c += a * b for one m16n8k16 tile: a the 16x16 bf16 A fragment, (b0, b1) the 16x8 B fragment.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four consecutive K/V elements in registers between their global load and their bf16 store to shared memory.
template <class KV>
struct Quad;
template <>
struct Quad<float> {
    float4 raw;
    __device__ __forceinline__ void load(const float* p) { raw = __ldg(reinterpret_cast<const float4*>(p)); }
    __device__ __forceinline__ void zero() { raw = make_float4(0.0f, 0.0f, 0.0f, 0.0f); }
    __device__ __forceinline__ uint2 bf16() const {
        return make_uint2(pack_bf16(raw.x, raw.y), pack_bf16(raw.z, raw.w));
    }
};
template <>
struct Quad<__nv_bfloat16> {
    uint2 raw;
    __device__ __forceinline__ void load(const __nv_bfloat16* p) { raw = __ldg(reinterpret_cast<const uint2*>(p)); }
    __device__ __forceinline__ void zero() { raw = make_uint2(0u, 0u); }
    __device__ __forceinline__ uint2 bf16() const { return raw; }
};
template <>
struct Quad<__half> {
    uint2 raw;
    __device__ __forceinline__ void load(const __half* p) { raw = __ldg(reinterpret_cast<const uint2*>(p)); }
    __device__ __forceinline__ void zero() { raw = make_uint2(0u, 0u); }
    __device__ __forceinline__ uint2 bf16() const {
        const __half2* h = reinterpret_cast<const __half2*>(&raw);
        const float2 a = __half22float2(h[0]), b = __half22float2(h[1]);
        return make_uint2(pack_bf16(a.x, a.y), pack_bf16(b.x, b.y));
    }
};

#endif  // __CUDA_ARCH__ >= 800

// Blocks per SM the kernel is compiled for: at D = 64 (the vision tower) 2, which caps the registers at 128 (no
// spills) so 16 warps share an SM; larger D keeps 1 (up to 216 registers: the accumulators grow with D).
template <int D>
constexpr int flash_min_blocks() { return D <= 64 ? 2 : 1; }

template <class KV, int D>
__global__ void __launch_bounds__(kFaThreads, flash_min_blocks<D>()) flash_attention_kernel(AttentionArgs a, FlashParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    constexpr int LD = D + 8;                                     // shared row stride, bf16 elements
    constexpr int kBuf = kFaKeys * LD;                            // one tile buffer
    constexpr int kQuadsPerRow = D / 4;
    constexpr int KD = D / 16;                                    // k-steps of Q K^T = 16-wide d blocks of P V
    constexpr unsigned kAll = 0xffffffffu;
    extern __shared__ uint4 flash_smem[];
    __nv_bfloat16* const ks = reinterpret_cast<__nv_bfloat16*>(flash_smem);  // [2][kFaKeys][LD]
    __nv_bfloat16* const vs = ks + 2 * kBuf;                                   // [2][kFaKeys][LD]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    // The head dim of the tensors: D itself, or (72, 88, 104, 120) D - 8 with the kernel padded to the next multiple
    // of 16 (the padding columns are zeros in Q, K and V, so they add nothing to the scores and are never written).
    const int dr = D == 64 ? 64 : static_cast<int>(a.head_dim);  // a constant where nothing pads to D (registers)
    const int G = p.group, tpb = p.tokens_per_block;
    const int Hkv = static_cast<int>(a.kv_heads);
    const int split = static_cast<int>(blockIdx.x % unsigned(p.splits));
    const int bid = static_cast<int>(blockIdx.x / unsigned(p.splits));
    const int g = bid % Hkv;
    const int tb = p.token_blocks - 1 - bid / Hkv;  // the blocks with the most keys (causal) start first
    const int64_t t0 = int64_t(tb) * tpb;
    const int64_t t_last = (t0 + tpb < a.tokens ? t0 + tpb : a.tokens) - 1;
    const int64_t n_past = a.causal ? runtime_n_past(a) : 0;
    const float sl = p.scale_log2;

    // The block's keys [blo, bhi): CAUSAL 0 .. n_past + t_last, SEGMENTS from the first token's segment to the last
    // token's; with splits, this block's chunk of them.
    int64_t blo = 0, bhi = n_past + t_last + 1;
    if (!a.causal) {
        int64_t x;
        segment_of(a, t0, &blo, &x);
        segment_of(a, t_last, &x, &bhi);
    }
    if (p.splits > 1) {
        blo = int64_t(split) * p.chunk;
        bhi = bhi < blo + p.chunk ? bhi : blo + p.chunk;
    }
    const int n_tiles = bhi > blo ? static_cast<int>((bhi - blo + kFaKeys - 1) / kFaKeys) : 0;

    // This thread's two rows (lane / 4 and lane / 4 + 8 of the warp's 16): the keys [lo, hi) they see within the
    // block's (keys outside it are never loaded: zeros, always masked), where their q is, where their output goes.
    int lo[2], hi[2];
    bool live[2];
    const float* qrow[2];
    int64_t orow[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int r = warp * 16 + (lane >> 2) + 8 * i;
        const int tl = r / G, gi = r - tl * G;
        const int64_t t = t0 + tl;
        live[i] = tl < tpb && t < a.tokens;
        lo[i] = hi[i] = 0;
        qrow[i] = nullptr;
        orow[i] = 0;
        if (live[i]) {
            int64_t l0 = 0, h0 = n_past + t + 1;
            if (!a.causal) segment_of(a, t, &l0, &h0);
            lo[i] = static_cast<int>(l0 > blo ? l0 : blo);
            hi[i] = static_cast<int>(h0 < bhi ? h0 : bhi);
            const int64_t h = int64_t(g) * G + gi;
            qrow[i] = a.q + t * a.q_stride + h * dr;
            orow[i] = t * a.q_heads + h;
        }
    }
    // Over the warp's live rows: a tile outside [lo_min, hi_max) is skipped, one inside [lo_max, hi_min) needs no mask.
    const int lo_min = __reduce_min_sync(kAll, min(live[0] ? lo[0] : INT_MAX, live[1] ? lo[1] : INT_MAX));
    const int hi_max = __reduce_max_sync(kAll, max(live[0] ? hi[0] : INT_MIN, live[1] ? hi[1] : INT_MIN));
    const int lo_max = __reduce_max_sync(kAll, max(live[0] ? lo[0] : INT_MIN, live[1] ? lo[1] : INT_MIN));
    const int hi_min = __reduce_min_sync(kAll, min(live[0] ? hi[0] : INT_MAX, live[1] ? hi[1] : INT_MAX));

    // Q as bf16 A fragments: qa[kk] = rows (lane/4, lane/4 + 8) x columns 16 kk + 2 (lane % 4) + {0, 1, 8, 9}.
    uint32_t qa[KD][4];
#pragma unroll
    for (int kk = 0; kk < KD; ++kk)
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float2 x = make_float2(0.0f, 0.0f), y = x;
            const int c = kk * 16 + 2 * (lane & 3);
            if (live[i]) {
                const float* q = qrow[i] + c;
                if (c < dr) x = *reinterpret_cast<const float2*>(q);
                if (c + 8 < dr) y = *reinterpret_cast<const float2*>(q + 8);
            }
            qa[kk][i] = pack_bf16(x.x, x.y);
            qa[kk][2 + i] = pack_bf16(y.x, y.y);
        }

    // Staging: kTpr threads per key row (D / 4 of them active, each 4 consecutive elements), kRowsPerPass rows per
    // pass of the block, kPasses passes per tile: coalesced loads, conflict-free 8-byte shared stores, and one running
    // pointer per thread.
    constexpr int kTpr = kQuadsPerRow <= 16 ? 16 : 32;
    constexpr int kRowsPerPass = kFaThreads / kTpr;
    constexpr int kPasses = kFaKeys / kRowsPerPass;
    const int srow = tid / kTpr, squad = tid % kTpr;
    const bool stager = squad < kQuadsPerRow, loader = stager && squad * 4 < dr;
    const int64_t pass_stride = int64_t(kRowsPerPass) * a.kv_stride;
    const KV* const kbase = static_cast<const KV*>(a.k) + int64_t(g) * dr + int64_t(srow) * a.kv_stride + squad * 4;
    const KV* const vbase = static_cast<const KV*>(a.v) + int64_t(g) * dr + int64_t(srow) * a.kv_stride + squad * 4;
    auto load_tile = [&](Quad<KV>(&st)[kPasses], const KV* base, int key0) {
        const KV* src = base + int64_t(key0) * a.kv_stride;
        const int64_t rows_left = bhi - key0 - srow;  // rows from here on exist (keys < bhi)
#pragma unroll
        for (int c = 0; c < kPasses; ++c) {
            if (loader && c * kRowsPerPass < rows_left) st[c].load(src);
            else st[c].zero();
            src += pass_stride;
        }
    };
    auto store_tile = [&](const Quad<KV>(&st)[kPasses], __nv_bfloat16* dst) {
        if (stager)
#pragma unroll
            for (int c = 0; c < kPasses; ++c)
                *reinterpret_cast<uint2*>(dst + (srow + c * kRowsPerPass) * LD + squad * 4) = st[c].bf16();
    };

    // ldmatrix row addresses of this lane. K (x4, B of S = Q K^T): matrices (keys +0..7, d +0..7), (keys +0..7,
    // d +8..15), (keys +8..15, d +0..7), (keys +8..15, d +8..15) = b0b1, b2b3 of two 8-key n tiles. V (x4.trans,
    // B of O = P V): (keys +0..7, d +0..7), (keys +8..15, d +0..7), (keys +0..7, d +8..15), (keys +8..15, d +8..15)
    // = b0b1, b2b3 of two 8-wide d tiles.
    const uint32_t ks_lane = static_cast<uint32_t>(__cvta_generic_to_shared(
        ks + ((lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 8));
    const uint32_t vs_lane = static_cast<uint32_t>(__cvta_generic_to_shared(
        vs + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8));

    float o[D / 8][4];
#pragma unroll
    for (int d = 0; d < D / 8; ++d)
#pragma unroll
        for (int c = 0; c < 4; ++c) o[d][c] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // m: raw score; l: this lane's columns only

    if (n_tiles > 0) {
        Quad<KV> st[kPasses];
        load_tile(st, kbase, static_cast<int>(blo));
        store_tile(st, ks);
        load_tile(st, vbase, static_cast<int>(blo));
        store_tile(st, vs);
    }
    __syncthreads();

    for (int it = 0; it < n_tiles; ++it) {
        const int buf = it & 1;
        const int k0 = static_cast<int>(blo) + it * kFaKeys;
        const bool next = it + 1 < n_tiles;
        const bool active = k0 < hi_max && k0 + kFaKeys > lo_min;
        Quad<KV> st[kPasses];
        if (next) load_tile(st, kbase, k0 + kFaKeys);

        uint32_t pa[kFaKeys / 16][4];  // P as bf16 A fragments, one per 16 keys
        if (active) {
            float s[kFaKeys / 8][4];
#pragma unroll
            for (int j = 0; j < kFaKeys / 8; ++j)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[j][c] = 0.0f;
            const uint32_t kaddr = ks_lane + buf * kBuf * 2;
            // Per k-step the four fragment loads go first, so the MMAs do not each wait on their own ldmatrix.
#pragma unroll
            for (int kk = 0; kk < KD; ++kk) {
                uint32_t b[kFaKeys / 16][4];
#pragma unroll
                for (int np = 0; np < kFaKeys / 16; ++np) ldmatrix_x4(b[np], kaddr + (np * 16 * LD + kk * 16) * 2);
#pragma unroll
                for (int np = 0; np < kFaKeys / 16; ++np) {
                    mma_bf16(s[2 * np], qa[kk], b[np][0], b[np][1]);
                    mma_bf16(s[2 * np + 1], qa[kk], b[np][2], b[np][3]);
                }
            }
            // s[j][c]: row lane/4 + 8 (c / 2), key k0 + 8 j + 2 (lane % 4) + c % 2.
            if (!(lo_max <= k0 && k0 + kFaKeys <= hi_min)) {
#pragma unroll
                for (int j = 0; j < kFaKeys / 8; ++j)
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const int key = k0 + 8 * j + 2 * (lane & 3) + (c & 1);
                        if (key < lo[c >> 1] || key >= hi[c >> 1]) s[j][c] = -INFINITY;
                    }
            }
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                float mx = m[i];
#pragma unroll
                for (int j = 0; j < kFaKeys / 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * i], s[j][2 * i + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(kAll, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(kAll, mx, 2));
                const float ms = mx == -INFINITY ? 0.0f : mx * sl;  // no visible key yet: p = 0, not NaN
                const float corr = exp2f(m[i] * sl - ms);          // 0 while m = -inf
                m[i] = mx;
                float sum = 0.0f;
#pragma unroll
                for (int j = 0; j < kFaKeys / 8; ++j)
#pragma unroll
                    for (int c = 2 * i; c < 2 * i + 2; ++c) {
                        const float e = exp2f(fmaf(s[j][c], sl, -ms));
                        s[j][c] = e;
                        sum += e;
                    }
                l[i] = l[i] * corr + sum;
#pragma unroll
                for (int d = 0; d < D / 8; ++d) {
                    o[d][2 * i] *= corr;
                    o[d][2 * i + 1] *= corr;
                }
            }
#pragma unroll
            for (int kk = 0; kk < kFaKeys / 16; ++kk) {
                pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
                pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
                pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
        }
        if (next) {
            store_tile(st, ks + (buf ^ 1) * kBuf);
            load_tile(st, vbase, k0 + kFaKeys);
        }
        if (active) {
            const uint32_t vaddr = vs_lane + buf * kBuf * 2;
            // Fragment loads in groups of four ahead of their MMAs, as above (KD is 4, 5, 6, 7 or 8).
#pragma unroll
            for (int kk = 0; kk < kFaKeys / 16; ++kk)
#pragma unroll
                for (int d0 = 0; d0 < KD; d0 += 4) {
                    uint32_t b[4][4];
#pragma unroll
                    for (int dp = d0; dp < d0 + 4 && dp < KD; ++dp)
                        ldmatrix_x4_trans(b[dp - d0], vaddr + (kk * 16 * LD + dp * 16) * 2);
#pragma unroll
                    for (int dp = d0; dp < d0 + 4 && dp < KD; ++dp) {
                        mma_bf16(o[2 * dp], pa[kk], b[dp - d0][0], b[dp - d0][1]);
                        mma_bf16(o[2 * dp + 1], pa[kk], b[dp - d0][2], b[dp - d0][3]);
                    }
                }
        }
        if (next) store_tile(st, vs + (buf ^ 1) * kBuf);
        __syncthreads();  // tile it + 1 is in place; buffer buf is free for tile it + 2
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
        l[i] += __shfl_xor_sync(kAll, l[i], 1);
        l[i] += __shfl_xor_sync(kAll, l[i], 2);
    }
    const int col = 2 * (lane & 3);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        if (!live[i]) continue;
        if (p.splits == 1) {
            float* out = a.out + orow[i] * dr + col;
            const float inv = 1.0f / l[i];
#pragma unroll
            for (int d = 0; d < D / 8; ++d)
                if (8 * d + col < dr)
                    *reinterpret_cast<float2*>(out + 8 * d) = make_float2(o[d][2 * i] * inv, o[d][2 * i + 1] * inv);
        } else {
            float* rec = p.partial + (orow[i] * p.splits + split) * (dr + 2);
#pragma unroll
            for (int d = 0; d < D / 8; ++d)
                if (8 * d + col < dr)
                    *reinterpret_cast<float2*>(rec + 8 * d + col) = make_float2(o[d][2 * i], o[d][2 * i + 1]);
            if ((lane & 3) == 0) {
                rec[dr] = m[i] * sl;  // -inf when the chunk holds none of the row's keys (then l = 0)
                rec[dr + 1] = l[i];
            }
        }
    }
#endif  // __CUDA_ARCH__ >= 800: never launched on older GPUs (flash_attention checks the device and the build)
}

using FlashKernel = void (*)(AttentionArgs, FlashParams);

// The kernel for head dim D: its own for multiples of 16 up to 128; for D = 72, 88, 104, 120 (Qwen3-VL-4B/8B's vision
// heads are 72) the next one, padded with zero columns.
int64_t padded_dim(int64_t D) { return D % 16 == 8 && D > 64 && D < 128 ? D + 8 : D; }

template <class KV>
FlashKernel pick_dim(int64_t D) {
    switch (padded_dim(D)) {
        case 64: return flash_attention_kernel<KV, 64>;
        case 80: return flash_attention_kernel<KV, 80>;
        case 96: return flash_attention_kernel<KV, 96>;
        case 112: return flash_attention_kernel<KV, 112>;
        case 128: return flash_attention_kernel<KV, 128>;
        default: return nullptr;
    }
}

bool aligned(const void* ptr, size_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

}  // namespace

bool flash_attention(CudaBackend& be, const AttentionArgs& a) {
    const int64_t D = a.head_dim, G = a.q_heads / a.kv_heads;
    FlashKernel kernel = nullptr;
    switch (a.kv_dtype) {
        case QWEN3VL_DTYPE_F16: kernel = pick_dim<__half>(D); break;
        case QWEN3VL_DTYPE_BF16: kernel = pick_dim<__nv_bfloat16>(D); break;
        case QWEN3VL_DTYPE_F32: kernel = pick_dim<float>(D); break;
        default: break;
    }
    if (kernel == nullptr || G > kFaRows) return false;
    // Vector accesses: q and out by float2, K/V by 4 elements (16 or 8 bytes).
    const size_t esize = a.kv_dtype == QWEN3VL_DTYPE_F32 ? 4 : 2;
    if (!aligned(a.q, 8) || a.q_stride % 2 != 0 || !aligned(a.out, 8) || !aligned(a.k, 4 * esize) ||
        !aligned(a.v, 4 * esize) || a.kv_stride % 4 != 0)
        return false;
    const int64_t keys = a.causal ? a.n_past + a.tokens : a.tokens;
    if (keys >= (int64_t(1) << 30)) return false;  // key indices are int in the kernel
    const size_t smem = size_t(4) * kFaKeys * (padded_dim(D) + 8) * sizeof(__nv_bfloat16);
    if (!kernel_ready(reinterpret_cast<const void*>(kernel), be.device(), smem, 80)) return false;

    FlashParams p{};
    p.scale_log2 = scale_log2(D);
    p.group = static_cast<int>(G);
    p.tokens_per_block = static_cast<int>(kFaRows / G);
    p.token_blocks = static_cast<int>((a.tokens + p.tokens_per_block - 1) / p.tokens_per_block);
    p.splits = 1;
    p.chunk = 0;
    const int64_t blocks = int64_t(p.token_blocks) * a.kv_heads;
    const int64_t sms = be.multiprocessors();
    // Split-K when the blocks would leave most SMs idle while each walks many keys (a short prompt after a long
    // history): chunks of at least 4 tiles, about one block per SM. Sized from the largest n_past.
    if (a.causal && blocks * 2 <= sms && keys >= 16 * kFaKeys) {
        const int64_t want = (sms + blocks - 1) / blocks;
        const int64_t chunk =
            std::max<int64_t>(4 * kFaKeys, ((keys + want - 1) / want + kFaKeys - 1) / kFaKeys * kFaKeys);
        p.chunk = static_cast<int>(chunk);
        p.splits = static_cast<int>((keys + chunk - 1) / chunk);
    }
    const int64_t rows = a.tokens * a.q_heads;
    CudaBackend::Scratch partial(be, p.splits > 1 ? size_t(rows * p.splits * (D + 2)) * sizeof(float) : 0);
    p.partial = partial.as<float>();
    kernel<<<static_cast<unsigned>(blocks * p.splits), kFaThreads, smem, be.stream()>>>(a, p);
    QWEN3VL_CUDA_CHECK_LAUNCH();
    if (p.splits > 1) merge_partials(be, a.out, p.partial, rows, D, p.splits);
    return true;
}

}  // namespace attn
}  // namespace cuda
}  // namespace qwen3vl
