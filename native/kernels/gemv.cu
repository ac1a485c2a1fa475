// GEMV for decode-sized M (gemv.cuh; the regimes are described in linear.cuh).
//
// Decode streams every weight once per token, so the kernel is a bandwidth problem: an H100 needs about
// 25-40 KB of loads in flight per SM to cover the HBM latency at ~3 TB/s, and a whole 8 MB matrix is only ~60 KB
// per SM, so for the small matrices all of it should be requested at once, right at the start of the kernel.
//  - Tiles. A block (256 threads) owns a tile of output rows at a time (grid-stride over tiles, grid = the
//    resident blocks of all SMs, or fewer when there are fewer tiles). The block splits K: its threads form row
//    groups of tk threads (tk = 32..256, the smallest power of two covering K in 16-byte chunks, so K = 2048 bf16
//    is one chunk per thread and K = 6144 three), each group owning NR weight rows of the tile. A thread loads its
//    chunk of all NR rows with independent 16-byte loads (NR = 8 at M = 1: 128 bytes in flight per thread).
//  - Pipelining. The chunks a block streams form one sequence of steps (tile, chunk step) through two register
//    buffers: the first two steps' loads are issued before x is staged (so the weights are already on their way
//    while the block waits for x and computes its RMSNorm), and each buffer is reloaded two steps ahead right after
//    its FMAs.
//  - x is staged once per block in shared memory (normalised there when the op has a norm: the block computes the
//    sum of squares of its x rows itself, as norm.cu does), with 16-bit weights in an even/odd-split layout: a
//    16-byte load holds 8 elements whose even ones widen by a shift and odd ones by a mask, so each plane is read
//    as one float4 per chunk, and consecutive threads read consecutive float4s (no bank conflicts). All M rows of
//    x are applied to each weight element loaded (M fp32 accumulators per weight row).
//  - Reduction. Each thread holds NR * M partial sums; a warp reduces them with a transposing butterfly (each
//    shuffle stage halves the values a lane keeps, ~NR * M shuffles instead of 5 * NR * M), the warps of a row
//    group add theirs through shared memory in a fixed order (deterministic), and the epilogue applies bias,
//    residual or swiglu and picks the output of the row's segment.
//  - Several weights of one input (q/k/v) are one virtual matrix: rows [0, N0) of weight 0, then weight 1, then
//    weight 2, so one launch covers them. swiglu pairs each gate row with its up row in the same tile.
//  - Rows that are not 16-byte aligned (K * size not a multiple of 16, unaligned views) or an x too large for shared
//    memory take a scalar kernel: one element per thread per row, x in shared memory when it fits, else read from
//    global memory (normalised beforehand into scratch when the op has a norm).
//  - Q8 weights (int8 blocks of 32 with an f16 scale) take their own kernel of the same structure with x quantized
//    per block into shared memory and dp4a dot products (gemv_q8_kernel below; its comment has the details and the
//    rounding of x). Its rows are always 16-byte aligned; an x whose quantized copy does not fit in shared memory
//    is split into groups of rows, one launch each.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common.cuh"
#include "dtype.h"
#include "gemv.cuh"
#include "norm.cuh"

namespace qwen3vl {
namespace cuda {
namespace {


constexpr int kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / int(kWarp);
// Blocks per SM the GEMV kernels are compiled for (__launch_bounds__): 2 caps them at 128 registers, which the M = 1
// kernels need for two steps of 8 loads in flight (122-127 registers on sm_90, no spills); 16 warps per SM then
// keep up to 128 KB of weights in flight per SM, several times what HBM latency needs.
constexpr int kGemvMinBlocks = 2;
// Weight rows per row group and tile in the vector kernel, by the padded row count MT of x: 8 independent loads
// per thread at M = 1; 4 above, where the M accumulators per row and the widened weights share the registers.
__host__ __device__ constexpr int vec_rows(int MT) { return MT == 1 ? 8 : 4; }
constexpr int kScalarRows = 4;  // scalar kernel: MT = kGemvMaxRows always

// 16 bytes of weights, read once per token: through the read-only path without allocating in L1 (sm_70+).
__device__ __forceinline__ uint4 load_weights(const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
#else
    return __ldg(static_cast<const uint4*>(p));
#endif
}

// The weight dtypes: E elements per 16-byte load, P planes of x in shared memory (16-bit: even and odd elements of
// each 8, matching the widening of one 32-bit word into its low and high element), fma of one load into one
// accumulator against the P float4s of x, and one element as f32 for the scalar kernel.
template <class W>
struct Vec;
template <>
struct Vec<float> {
    static constexpr int E = 4, P = 1;
    __device__ static void fma(float& acc, const uint4& u, const float4* x) {
        acc = fmaf(x[0].x, __uint_as_float(u.x), acc);
        acc = fmaf(x[0].y, __uint_as_float(u.y), acc);
        acc = fmaf(x[0].z, __uint_as_float(u.z), acc);
        acc = fmaf(x[0].w, __uint_as_float(u.w), acc);
    }
    __device__ static float one(const float* p) { return __ldg(p); }
};
template <>
struct Vec<__nv_bfloat16> {
    static constexpr int E = 8, P = 2;
    // bf16 is the top half of an f32: the low element widens by a shift, the high one by a mask.
    __device__ static void fma(float& acc, const uint4& u, const float4* x) {
        acc = fmaf(x[0].x, __uint_as_float(u.x << 16), acc);
        acc = fmaf(x[1].x, __uint_as_float(u.x & 0xffff0000u), acc);
        acc = fmaf(x[0].y, __uint_as_float(u.y << 16), acc);
        acc = fmaf(x[1].y, __uint_as_float(u.y & 0xffff0000u), acc);
        acc = fmaf(x[0].z, __uint_as_float(u.z << 16), acc);
        acc = fmaf(x[1].z, __uint_as_float(u.z & 0xffff0000u), acc);
        acc = fmaf(x[0].w, __uint_as_float(u.w << 16), acc);
        acc = fmaf(x[1].w, __uint_as_float(u.w & 0xffff0000u), acc);
    }
    __device__ static float one(const __nv_bfloat16* p) {
        return __uint_as_float(static_cast<unsigned>(__ldg(reinterpret_cast<const unsigned short*>(p))) << 16);
    }
};
template <>
struct Vec<__half> {
    static constexpr int E = 8, P = 2;
    __device__ static float2 widen(unsigned w) {
        __half2 h;
        memcpy(&h, &w, 4);
        return __half22float2(h);  // (low, high) element
    }
    __device__ static void fma(float& acc, const uint4& u, const float4* x) {
        const float2 a = widen(u.x), b = widen(u.y), c = widen(u.z), d = widen(u.w);
        acc = fmaf(x[0].x, a.x, acc);
        acc = fmaf(x[1].x, a.y, acc);
        acc = fmaf(x[0].y, b.x, acc);
        acc = fmaf(x[1].y, b.y, acc);
        acc = fmaf(x[0].z, c.x, acc);
        acc = fmaf(x[1].z, c.y, acc);
        acc = fmaf(x[0].w, d.x, acc);
        acc = fmaf(x[1].w, d.y, acc);
    }
    __device__ static float one(const __half* p) { return __half2float(__ldg(p)); }
};

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// Everything a GEMV launch needs (passed by value: one kernel-parameter block).
struct GemvParams {
    const float* x;     // [M, K]
    int64_t K;
    int M;
    int tk;             // threads per row group (power of two, 32..kGemvThreads)
    int64_t rows;       // output rows over all segments
    int64_t tiles;      // tiles of (kGemvThreads / tk) * rows-per-group output rows
    int64_t end0, end1; // first row of segment 1 and of segment 2 (rows when absent)
    const void* w0;     // segment weights [n_s, K], all of one dtype
    const void* w1;
    const void* w2;
    float* out0;        // segment outputs [M, n_s]
    float* out1;
    float* out2;
    const void* up;     // swiglu (one segment): up weight [rows, K]; out0 = silu(x w0^T) * (x up^T)
    const void* norm;   // RMSNorm weight [K] or NULL
    qwen3vl_dtype norm_dtype;
    float eps;
    const void* bias;   // [rows] or NULL (one segment)
    qwen3vl_dtype bias_dtype;
    const float* residual;  // [M, rows] or NULL (one segment); may be out0
    bool x_shared;      // scalar kernel: x staged in shared memory (the vector kernel always stages it)
    // Q8 only: the f16 scales [n_s, K / 32] of w0..w2 and of up (w0..w2 and up are then the int8 planes), and
    // whether x is 16-byte aligned (read as float4s while it is quantized).
    const void* s0;
    const void* s1;
    const void* s2;
    const void* up_scales;
    bool x_vec;
};

template <class W>
__device__ __forceinline__ const W* weight_row(const GemvParams& p, int64_t n) {
    if (n < p.end0) return static_cast<const W*>(p.w0) + n * p.K;
    if (n < p.end1) return static_cast<const W*>(p.w1) + (n - p.end0) * p.K;
    return static_cast<const W*>(p.w2) + (n - p.end1) * p.K;
}

// The NR weight rows a row group streams for tile `tile` (group g): R output rows, and for swiglu their up rows
// after them. NULL past the last row.
template <class W, int NR, bool kSwiglu>
__device__ __forceinline__ void tile_rows(const GemvParams& p, int64_t tile, int g, const W* (&ptr)[NR]) {
    constexpr int R = kSwiglu ? NR / 2 : NR;
    const int groups = kGemvThreads / p.tk;
    const int64_t n0 = (tile * groups + g) * R;
    const int64_t segment_end = n0 < p.end0 ? p.end0 : n0 < p.end1 ? p.end1 : p.rows;
    if (n0 + R <= segment_end) {  // the usual case: R consecutive rows of one weight
        const W* w = weight_row<W>(p, n0);
        const W* u = kSwiglu ? static_cast<const W*>(p.up) + n0 * p.K : nullptr;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            ptr[r] = w + r * p.K;
            if (kSwiglu) ptr[kSwiglu ? R + r : 0] = u + r * p.K;
        }
        return;
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int64_t n = n0 + r;
        ptr[r] = n < p.rows ? weight_row<W>(p, n) : nullptr;
        if (kSwiglu) ptr[kSwiglu ? R + r : 0] = n < p.rows ? static_cast<const W*>(p.up) + n * p.K : nullptr;
    }
}

// Position of x[m, k] in shared memory: row-major for P = 1; for P = 2 the even elements of each group of 8 in the
// first half of the row and the odd ones in the second, so chunk c of row m is the float4s m*K/4 + c (even) and
// m*K/4 + K/8 + c (odd).
template <int P>
__device__ __forceinline__ int64_t x_pos(int m, int64_t k, int64_t K) {
    if (P == 1) return int64_t(m) * K + k;
    const int64_t c = k >> 3;
    const int e = int(k & 7);
    return int64_t(m) * K + (e & 1) * (K / 2) + c * 4 + (e >> 1);
}

// Copies the M rows of x into shared memory (layout x_pos<P>); with a norm, y = (x * inv_rms) * w with the sums of
// squares reduced over the block and the same rounding steps as norm.cu. `red` holds kGemvWarps * MT floats.
// Ends with a barrier.
template <int P, int MT>
__device__ void stage_x(const GemvParams& p, float* xs, float* red) {
    const int64_t K = p.K;
    float ss[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
        ss[m] = 0.0f;
        if (m < p.M)
            for (int64_t k = threadIdx.x; k < K; k += kGemvThreads) {
                const float v = p.x[int64_t(m) * K + k];
                ss[m] += v * v;
                xs[x_pos<P>(m, k, K)] = v;
            }
    }
    if (p.norm) {
        const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            ss[m] = warp_sum(ss[m]);
            if (lane == 0) red[warp * MT + m] = ss[m];
        }
        __syncthreads();
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            if (m >= p.M) continue;
            float total = 0.0f;
            for (int w = 0; w < kGemvWarps; ++w) total += red[w * MT + m];
            const float inv = 1.0f / sqrtf(total / static_cast<float>(K) + p.eps);
            // Each thread rescales the elements it wrote above: no barrier needed in between.
            for (int64_t k = threadIdx.x; k < K; k += kGemvThreads) {
                const int64_t i = x_pos<P>(m, k, K);
                xs[i] = (xs[i] * inv) * load_f32(p.norm, p.norm_dtype, size_t(k));
            }
        }
    }
    __syncthreads();
}

// c ? a : b on values. Written as selp: as a C++ conditional on two array elements the compiler turns it into a
// load from a selected address, which moves the whole array to local memory.
__device__ __forceinline__ float select(bool c, float a, float b) {
    float r;
    asm("{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %3, 0;\n\tselp.f32 %0, %1, %2, p;\n\t}"
        : "=f"(r)
        : "f"(a), "f"(b), "r"(unsigned(c)));
    return r;
}

// Warp reduction of V values per lane (V a power of two) that transposes as it goes: at each of the 5 butterfly
// stages a lane keeps half of its values (the upper half when its stage bit is set) and adds the partner's copy
// of them, so V/2 + V/4 + ... shuffles instead of 5 V. Afterwards lane holds the warp sums of the values
// reduced_index<V>(i, lane), i < max(V / 32, 1); for V < 32 several lanes hold the same one.
// One stage per template instance (offset 16 >> St), so every array index is a constant after inlining: a loop
// over the stages is not unrolled by nvcc, and the array then lives in local memory.
template <int V, int St>
__device__ __forceinline__ void reduce_transpose_stage(float (&v)[V], unsigned lane) {
    if constexpr (St < 5) {
        constexpr int o = 16 >> St, n = V >> St;
        if constexpr (n >= 2) {
            constexpr int h = n / 2;
            const bool upper = (lane & unsigned(o)) != 0;
#pragma unroll
            for (int i = 0; i < h; ++i) {
                const float send = select(upper, v[i], v[i + h]);
                const float keep = select(upper, v[i + h], v[i]);
                v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
            }
        } else {
            v[0] += __shfl_xor_sync(0xffffffffu, v[0], o);
        }
        reduce_transpose_stage<V, St + 1>(v, lane);
    }
}

template <int V>
__device__ __forceinline__ void reduce_transpose(float (&v)[V], unsigned lane) {
    reduce_transpose_stage<V, 0>(v, lane);
}

template <int V>
__device__ __forceinline__ int reduced_index(int i, unsigned lane) {
    int idx = i, n = V;
#pragma unroll
    for (int st = 0; st < 5; ++st)
        if (n >= 2) {
            n /= 2;
            idx += n * int((lane >> (4 - st)) & 1u);
        }
    return idx;
}

// Writes out[m, n] for output row n (its segment picked here) from the finished sums.
__device__ __forceinline__ void store_output(const GemvParams& p, int64_t n, int m, float s) {
    float* out;
    int64_t col, ld;
    if (n < p.end0) {
        out = p.out0;
        col = n;
        ld = p.end0;
    } else if (n < p.end1) {
        out = p.out1;
        col = n - p.end0;
        ld = p.end1 - p.end0;
    } else {
        out = p.out2;
        col = n - p.end1;
        ld = p.rows - p.end1;
    }
    const int64_t i = int64_t(m) * ld + col;
    if (p.bias) s += load_f32(p.bias, p.bias_dtype, size_t(col));
    if (p.residual) s = p.residual[i] + s;
    out[i] = s;
}

// End of a tile: reduce the block's partial sums acc[r][m] per row group and write the outputs. `red` holds
// kGemvWarps * NR * MT floats and must not be in use by the previous tile (the caller alternates two buffers,
// so one barrier per tile suffices). Zeroes acc for the next tile.
template <int NR, int MT, bool kSwiglu>
__device__ __forceinline__ void finish_tile(const GemvParams& p, float (&acc)[NR][MT], float* red, int64_t tile) {
    constexpr int V = NR * MT, R = kSwiglu ? NR / 2 : NR;
    constexpr unsigned kCopies = V >= int(kWarp) ? 0u : kWarp / V - 1;  // lanes holding the same value
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    float v[V];
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            v[r * MT + m] = acc[r][m];
            acc[r][m] = 0.0f;
        }
    reduce_transpose<V>(v, lane);
    constexpr int kKept = V >= int(kWarp) ? V / int(kWarp) : 1;  // values per lane after the reduction
    if ((lane & kCopies) == 0) {
#pragma unroll
        for (int i = 0; i < kKept; ++i) red[warp * V + reduced_index<V>(i, lane)] = v[i];
    }
    __syncthreads();
    const int groups = kGemvThreads / p.tk, warps_per_group = p.tk / int(kWarp);
    for (int o = threadIdx.x; o < groups * R * MT; o += kGemvThreads) {
        const int g = o / (R * MT), r = (o / MT) % R, m = o % MT;
        const int64_t n = (tile * groups + g) * R + r;
        if (m >= p.M || n >= p.rows) continue;
        float s = 0.0f, su = 0.0f;
        for (int w = g * warps_per_group; w < (g + 1) * warps_per_group; ++w) {
            s += red[w * V + r * MT + m];
            if (kSwiglu) su += red[w * V + (kSwiglu ? R + r : 0) * MT + m];
        }
        if (kSwiglu) p.out0[int64_t(m) * p.rows + n] = silu(s) * su;
        else store_output(p, n, m, s);
    }
}

// The vector kernel (16-byte aligned rows, K a multiple of 16 bytes, x in shared memory), M <= MT.
template <class W, int MT, bool kSwiglu>
__global__ void __launch_bounds__(kGemvThreads, kGemvMinBlocks) gemv_vec_kernel(const GemvParams p) {
    constexpr int NR = vec_rows(MT), E = Vec<W>::E, P = Vec<W>::P, V = NR * MT;
    static_assert(V <= 32 && (V & (V - 1)) == 0, "the reduction takes a power of two up to 32 values");
    extern __shared__ float4 x_shared[];
    __shared__ float red[2 * kGemvWarps * V];
    float* xs = reinterpret_cast<float*>(x_shared);

    const int tk = p.tk, g = int(threadIdx.x) / tk;
    const int64_t j = int64_t(threadIdx.x) % tk;
    const int64_t chunks = p.K / E;
    const int64_t steps = chunks > tk ? (chunks + tk - 1) / tk : 1;
    const int64_t plane = p.K / (4 * P);  // float4s per plane of a row of x

    const W* ptr[NR];
    uint4 a[NR], b[NR];
    float acc[NR][MT];
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int m = 0; m < MT; ++m) acc[r][m] = 0.0f;

    // Load cursor (one step ahead of the compute cursor): tile lt, chunk step ls.
    int64_t lt = blockIdx.x, ls = 0;
    auto load_step = [&](uint4(&buf)[NR]) {
        if (lt >= p.tiles) return;
        if (ls == 0) tile_rows<W, NR, kSwiglu>(p, lt, g, ptr);
        const int64_t c = j + ls * tk;
#pragma unroll
        for (int r = 0; r < NR; ++r)
            buf[r] = ptr[r] != nullptr && c < chunks ? load_weights(ptr[r] + c * E) : make_uint4(0u, 0u, 0u, 0u);
        if (++ls == steps) {
            ls = 0;
            lt += gridDim.x;
        }
    };
    // Compute cursor: tile ct, step cs; red alternates between two buffers per tile.
    int64_t ct = blockIdx.x, cs = 0;
    int parity = 0;
    auto compute_step = [&](const uint4(&buf)[NR]) {
        const int64_t c = j + cs * tk;
        if (c < chunks) {
            const float4* x4 = x_shared + c;
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                if (m >= p.M) continue;
                float4 xv[P];
#pragma unroll
                for (int q = 0; q < P; ++q) xv[q] = x4[(m * P + q) * plane];
#pragma unroll
                for (int r = 0; r < NR; ++r) Vec<W>::fma(acc[r][m], buf[r], xv);
            }
        }
        if (++cs == steps) {
            finish_tile<NR, MT, kSwiglu>(p, acc, red + parity * (kGemvWarps * V), ct);
            parity ^= 1;
            cs = 0;
            ct += gridDim.x;
        }
        return ct < p.tiles;
    };

    pdl_launch_dependents();
    // The first two steps' weights are requested before x is read (and, launched as PDL, before the kernel that
    // writes x has finished): a q/k/v or o_proj block then has all of its weights in flight while it waits for x and
    // normalises it. Afterwards each buffer is refilled two steps ahead as soon as it has been used.
    load_step(a);
    load_step(b);
    pdl_wait();
    stage_x<P, MT>(p, xs, red);
    for (;;) {
        if (!compute_step(a)) break;
        load_step(a);
        if (!compute_step(b)) break;
        load_step(b);
    }
}

// The scalar kernel: any alignment and K, one element per thread per row; x in shared memory (row-major) when
// p.x_shared, else read from global memory (then p.norm is NULL: the host normalised x beforehand).
template <class W, bool kSwiglu>
__global__ void __launch_bounds__(kGemvThreads, kGemvMinBlocks) gemv_scalar_kernel(const GemvParams p) {
    constexpr int MT = int(kGemvMaxRows), NR = kScalarRows, V = NR * MT;
    static_assert(V <= 32 && (V & (V - 1)) == 0, "the reduction takes a power of two up to 32 values");
    extern __shared__ float4 x_shared[];
    __shared__ float red[2 * kGemvWarps * V];
    pdl_launch_dependents();
    pdl_wait();
    const float* xs = p.x;
    if (p.x_shared) {
        stage_x<1, MT>(p, reinterpret_cast<float*>(x_shared), red);
        xs = reinterpret_cast<const float*>(x_shared);
    }
    const int tk = p.tk, g = int(threadIdx.x) / tk;
    const int64_t K = p.K;
    const W* ptr[NR];
    float acc[NR][MT];
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int m = 0; m < MT; ++m) acc[r][m] = 0.0f;
    int parity = 0;
    for (int64_t tile = blockIdx.x; tile < p.tiles; tile += gridDim.x) {
        tile_rows<W, NR, kSwiglu>(p, tile, g, ptr);
        for (int64_t k = int64_t(threadIdx.x) % tk; k < K; k += tk) {
            float wv[NR];
#pragma unroll
            for (int r = 0; r < NR; ++r) wv[r] = ptr[r] ? Vec<W>::one(ptr[r] + k) : 0.0f;
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                if (m >= p.M) continue;
                const float xv = xs[int64_t(m) * K + k];
#pragma unroll
                for (int r = 0; r < NR; ++r) acc[r][m] = fmaf(xv, wv[r], acc[r][m]);
            }
        }
        finish_tile<NR, MT, kSwiglu>(p, acc, red + parity * (kGemvWarps * V), tile);
        parity ^= 1;
    }
}

// ---- Q8 weights (core/quant.h: int8 blocks of 32 along a row, one f16 scale each)
//
// The same tiles, pipeline and reduction as the vector kernel, with integer dot products: x is quantized like the
// weights, per block of 32 and per row, once per block of threads into shared memory (stage_x_q8), and each 16-byte
// load of a weight row (16 int8, half a block: lanes 2i and 2i + 1 of a row group read the two halves of one block,
// so consecutive lanes read consecutive 16 bytes) meets the 16 matching int8 of each x row in four dp4a, whose exact
// int32 sum is scaled once: acc += float(sum) * (dw * dx), dw the weight block's f16 scale (a 2-byte load beside the
// 16 bytes) and dx the x block's f32 scale (per half block: the same sum as per block, one more rounding).
// kQ8Rows = 4 rows per group at every M: a row is half as many bytes as in bf16, so tiles of 8 rows at K = 2048
// (256 of them for a 2048-row matrix, about one per resident block of an H100/H200) with 2 x 4 loads of 16 bytes in
// flight per thread (64 KB per SM at two blocks). 8 rows per group at M = 1, as the bf16 kernel, would need 32 more
// registers for the row and scale pointers and spills at the 128 that two blocks per SM allow.
//
// The quantization of x (the contract the tests reproduce): per row m and block b of 32, amax = max |y|
// over the block, dx = amax / 127 (f32, rounded to nearest), q = rint(y / dx) (f32 division rounded to nearest, then
// to nearest even integer), clamped to +-127, q = 0 where dx = 0; y = x, or with the norm y = (x * inv_rms) * w as
// in stage_x. A block holding a NaN or an infinity gets dx = NaN (and q = 0), so its row's outputs are NaN as the
// dense kernels' would be non-finite. Per element |y - dx q| <= dx / 2 (1 + 2^-16) (the division's rounding; dx in
// f32's normal range, max |y| above ~2e-36), so an output moves by at most sum_b dx_b / 2 sum_{k in b} |w_k| from
// the product with unquantized y: the activation's rounding, ~0.4% relative RMS for blocks of uniform values, the
// same order as the weights' own.
constexpr int kQ8Rows = 4;
constexpr int kQ8Chunk = 16;  // int8 weights per 16-byte load

// sum of the four int8 products of a and b, plus c (dp4a on sm_61+, which every architecture of the build has).
__device__ __forceinline__ int dot4(unsigned a, unsigned b, int c) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 610
    return __dp4a(int(a), int(b), c);
#else
#pragma unroll
    for (int i = 0; i < 4; ++i) c += int(int8_t(a >> (8 * i))) * int(int8_t(b >> (8 * i)));
    return c;
#endif
}

__device__ __forceinline__ unsigned short load_scale(const unsigned short* p) { return __ldg(p); }
__device__ __forceinline__ float f16_bits(unsigned short h) { return __half2float(__ushort_as_half(h)); }

// Row n of the virtual matrix: its int8 row and its scales.
__device__ __forceinline__ void q8_row(const GemvParams& p, int64_t n, const int8_t*& q, const unsigned short*& s) {
    const void* w;
    const void* sc;
    int64_t r;
    if (n < p.end0) {
        w = p.w0;
        sc = p.s0;
        r = n;
    } else if (n < p.end1) {
        w = p.w1;
        sc = p.s1;
        r = n - p.end0;
    } else {
        w = p.w2;
        sc = p.s2;
        r = n - p.end1;
    }
    q = static_cast<const int8_t*>(w) + r * p.K;
    s = static_cast<const unsigned short*>(sc) + r * (p.K / 32);
}

// The NR rows a row group streams for tile `tile` (as tile_rows): R output rows, for swiglu their up rows after them.
template <int NR, bool kSwiglu>
__device__ __forceinline__ void q8_tile_rows(const GemvParams& p, int64_t tile, int g, const int8_t* (&q)[NR],
                                             const unsigned short* (&s)[NR]) {
    constexpr int R = kSwiglu ? NR / 2 : NR;
    const int groups = kGemvThreads / p.tk;
    const int64_t n0 = (tile * groups + g) * R;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int64_t n = n0 + r;
        q[r] = nullptr;
        s[r] = nullptr;
        if (n < p.rows) q8_row(p, n, q[r], s[r]);
        if constexpr (kSwiglu) {
            q[R + r] = n < p.rows ? static_cast<const int8_t*>(p.up) + n * p.K : nullptr;
            s[R + r] = n < p.rows ? static_cast<const unsigned short*>(p.up_scales) + n * (p.K / 32) : nullptr;
        }
    }
}

// Quantizes the M rows of x (normalised first when the op has a norm, as stage_x) into xq (int8 [M, K]) and xd (f32
// [M, K / 32]), by the contract above. Four threads per block of 32, 8 elements each (two float4 loads when x is
// 16-byte aligned); a thread's tasks are loaded two at a time before they are reduced, so their loads overlap.
// `red` holds kGemvWarps * MT floats. Ends with a barrier.
template <int MT>
__device__ void stage_x_q8(const GemvParams& p, int8_t* xq, float* xd, float* red) {
    __shared__ float inv_rms[kGemvMaxRows];
    const int64_t K = p.K;
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    if (p.norm) {
        float ss[MT];
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            ss[m] = 0.0f;
            if (m < p.M)
#pragma unroll 4
                for (int64_t k = threadIdx.x; k < K; k += kGemvThreads) {
                    const float v = p.x[int64_t(m) * K + k];
                    ss[m] += v * v;
                }
            ss[m] = warp_sum(ss[m]);
            if (lane == 0) red[warp * MT + m] = ss[m];
        }
        __syncthreads();
        if (int(threadIdx.x) < p.M) {
            float total = 0.0f;
            for (int w = 0; w < kGemvWarps; ++w) total += red[w * MT + int(threadIdx.x)];
            inv_rms[threadIdx.x] = 1.0f / sqrtf(total / static_cast<float>(K) + p.eps);
        }
        __syncthreads();
    }
    constexpr int kBatch = 2;
    const int64_t tasks = int64_t(p.M) * K / 8;  // a multiple of 4: every quad of lanes holds one whole block
    for (int64_t t0 = 0; t0 < tasks; t0 += kBatch * kGemvThreads) {
        float v[kBatch][8];
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
            const int64_t t = t0 + i * kGemvThreads + threadIdx.x;
            if (t >= tasks) {
#pragma unroll
                for (int e = 0; e < 8; ++e) v[i][e] = 0.0f;
            } else if (p.x_vec) {
                const float4 a = reinterpret_cast<const float4*>(p.x)[2 * t];
                const float4 b = reinterpret_cast<const float4*>(p.x)[2 * t + 1];
                v[i][0] = a.x, v[i][1] = a.y, v[i][2] = a.z, v[i][3] = a.w;
                v[i][4] = b.x, v[i][5] = b.y, v[i][6] = b.z, v[i][7] = b.w;
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) v[i][e] = p.x[8 * t + e];
            }
        }
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
            const int64_t t = t0 + i * kGemvThreads + threadIdx.x;
            const bool mine = t < tasks;  // the same for the four lanes of a quad (tasks is a multiple of 4)
            if (p.norm && mine) {
                const int m = int((8 * t) / K);
                const int64_t k = 8 * t - int64_t(m) * K;
                const float inv = inv_rms[m];
#pragma unroll
                for (int e = 0; e < 8; ++e) v[i][e] = (v[i][e] * inv) * load_f32(p.norm, p.norm_dtype, size_t(k + e));
            }
            float amax = 0.0f;
            unsigned bad = 0;
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                amax = fmaxf(amax, fabsf(v[i][e]));
                bad |= isfinite(v[i][e]) ? 0u : 1u;
            }
            // The quad's max and non-finite flag (lanes 4j .. 4j + 3 hold one block; every lane takes part).
#pragma unroll
            for (int o = 1; o <= 2; o <<= 1) {
                amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
                bad |= __shfl_xor_sync(0xffffffffu, bad, o);
            }
            if (!mine) continue;
            const float dx = __fdiv_rn(amax, 127.0f);
            unsigned packed[2] = {0u, 0u};
            if (!bad && dx > 0.0f) {
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const float q = fminf(fmaxf(rintf(__fdiv_rn(v[i][e], dx)), -127.0f), 127.0f);
                    packed[e / 4] |= (unsigned(int(q)) & 0xffu) << (8 * (e % 4));
                }
            }
            *reinterpret_cast<uint2*>(xq + 8 * t) = make_uint2(packed[0], packed[1]);
            if ((threadIdx.x & 3u) == 0) xd[(8 * t) / 32] = bad ? __int_as_float(0x7fc00000) : dx;
        }
    }
    __syncthreads();
}

// The Q8 kernel, M <= MT (every Q8 row is 16-byte aligned: K is a multiple of 32 and the planes start aligned).
template <int MT, bool kSwiglu>
__global__ void __launch_bounds__(kGemvThreads, kGemvMinBlocks) gemv_q8_kernel(const GemvParams p) {
    constexpr int NR = kQ8Rows, V = NR * MT;
    static_assert(V <= 32 && (V & (V - 1)) == 0, "the reduction takes a power of two up to 32 values");
    extern __shared__ float4 x_shared[];
    __shared__ float red[2 * kGemvWarps * V];
    int8_t* xq = reinterpret_cast<int8_t*>(x_shared);
    float* xd = reinterpret_cast<float*>(xq + int64_t(p.M) * p.K);  // M K is a multiple of 32

    const int tk = p.tk, g = int(threadIdx.x) / tk;
    const int64_t j = int64_t(threadIdx.x) % tk;
    const int64_t chunks = p.K / kQ8Chunk, nb = p.K / 32;
    const int64_t steps = chunks > tk ? (chunks + tk - 1) / tk : 1;

    const int8_t* qp[NR];
    const unsigned short* sp[NR];
    uint4 a[NR], b[NR];
    unsigned short sa[NR], sb[NR];
    float acc[NR][MT];
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int m = 0; m < MT; ++m) acc[r][m] = 0.0f;

    int64_t lt = blockIdx.x, ls = 0;
    auto load_step = [&](uint4(&buf)[NR], unsigned short(&sc)[NR]) {
        if (lt >= p.tiles) return;
        if (ls == 0) q8_tile_rows<NR, kSwiglu>(p, lt, g, qp, sp);
        const int64_t c = j + ls * tk;
#pragma unroll
        for (int r = 0; r < NR; ++r) {
            const bool live = qp[r] != nullptr && c < chunks;
            buf[r] = live ? load_weights(qp[r] + c * kQ8Chunk) : make_uint4(0u, 0u, 0u, 0u);
            sc[r] = live ? load_scale(sp[r] + (c >> 1)) : static_cast<unsigned short>(0);
        }
        if (++ls == steps) {
            ls = 0;
            lt += gridDim.x;
        }
    };
    int64_t ct = blockIdx.x, cs = 0;
    int parity = 0;
    auto compute_step = [&](const uint4(&buf)[NR], const unsigned short(&sc)[NR]) {
        const int64_t c = j + cs * tk;
        if (c < chunks) {
            float dw[NR];
#pragma unroll
            for (int r = 0; r < NR; ++r) dw[r] = f16_bits(sc[r]);
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                if (m >= p.M) continue;
                const uint4 xv = *reinterpret_cast<const uint4*>(xq + int64_t(m) * p.K + c * kQ8Chunk);
                const float dx = xd[int64_t(m) * nb + (c >> 1)];
#pragma unroll
                for (int r = 0; r < NR; ++r) {
                    int s = dot4(buf[r].x, xv.x, 0);
                    s = dot4(buf[r].y, xv.y, s);
                    s = dot4(buf[r].z, xv.z, s);
                    s = dot4(buf[r].w, xv.w, s);
                    acc[r][m] = fmaf(static_cast<float>(s), dw[r] * dx, acc[r][m]);
                }
            }
        }
        if (++cs == steps) {
            finish_tile<NR, MT, kSwiglu>(p, acc, red + parity * (kGemvWarps * V), ct);
            parity ^= 1;
            cs = 0;
            ct += gridDim.x;
        }
        return ct < p.tiles;
    };

    pdl_launch_dependents();
    // As the vector kernel: the first two steps' weights (and scales) are requested before x is read.
    load_step(a, sa);
    load_step(b, sb);
    pdl_wait();
    stage_x_q8<MT>(p, xq, xd, red);
    for (;;) {
        if (!compute_step(a, sa)) break;
        load_step(a, sa);
        if (!compute_step(b, sb)) break;
        load_step(b, sb);
    }
}

using GemvKernel = void (*)(GemvParams);

template <class W, bool kSwiglu>
GemvKernel vec_kernel(int MT) {
    switch (MT) {
        case 1: return gemv_vec_kernel<W, 1, kSwiglu>;
        case 2: return gemv_vec_kernel<W, 2, kSwiglu>;
        case 4: return gemv_vec_kernel<W, 4, kSwiglu>;
        default: return gemv_vec_kernel<W, 8, kSwiglu>;
    }
}

// Resident blocks per SM of a GEMV kernel with `smem` bytes of dynamic shared memory, 0 when it cannot launch at
// all. The kernel's dynamic shared-memory limit is raised to the device's opt-in maximum first. Cached per device,
// kernel and size (the queries cost microseconds and never change); host-only calls, nothing is queued.
struct OccupancyKey {
    GemvKernel kernel;
    uint64_t smem;
    int64_t device;
};

int resident_blocks(CudaBackend& be, GemvKernel kernel, size_t smem) {
    using Cache = std::unordered_map<OccupancyKey, int, BytesHash<OccupancyKey>, BytesEqual<OccupancyKey>>;
    static std::mutex mutex;
    static auto* cache = new Cache();  // never destroyed: usable until the process ends
    const OccupancyKey key{kernel, smem, be.device()};
    {
        std::lock_guard<std::mutex> lock(mutex);
        const auto it = cache->find(key);
        if (it != cache->end()) return it->second;
    }
    int optin = 0;
    QWEN3VL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, be.device()));
    cudaFuncAttributes fa{};
    QWEN3VL_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
    int blocks = 0;
    if (smem + fa.sharedSizeBytes <= size_t(optin)) {
        if (smem > 48 * 1024)
            QWEN3VL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    optin - int(fa.sharedSizeBytes)));
        QWEN3VL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kGemvThreads, smem));
    }
    std::lock_guard<std::mutex> lock(mutex);
    cache->emplace(key, blocks);
    return blocks;
}


bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class W>
void launch_gemv(CudaBackend& be, const GemvJob& job) {
    constexpr int E = Vec<W>::E;
    const bool swiglu = job.up.data != nullptr;
    const int64_t M = job.M, K = job.K;
    GemvParams p{};
    p.x = job.x;
    p.K = K;
    p.M = int(M);
    p.end0 = job.proj[0].n;
    p.end1 = p.end0 + (job.count > 1 ? job.proj[1].n : 0);
    p.rows = p.end1 + (job.count > 2 ? job.proj[2].n : 0);
    if (job.count < 2) p.end1 = p.rows;
    p.w0 = job.proj[0].w.data;
    p.out0 = job.proj[0].out;
    if (job.count > 1) {
        p.w1 = job.proj[1].w.data;
        p.out1 = job.proj[1].out;
    }
    if (job.count > 2) {
        p.w2 = job.proj[2].w.data;
        p.out2 = job.proj[2].out;
    }
    p.up = job.up.data;
    p.norm = job.norm.data;
    p.norm_dtype = job.norm.dtype;
    p.eps = job.eps;
    p.bias = job.bias.data;
    p.bias_dtype = job.bias.dtype;
    p.residual = job.residual;

    bool vec = K % E == 0;
    for (int i = 0; i < job.count; ++i) vec = vec && aligned16(job.proj[i].w.data);
    if (swiglu) vec = vec && aligned16(job.up.data);
    const int MT = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
    const size_t x_bytes = size_t(M * K) * sizeof(float);
    GemvKernel kernel = nullptr;
    size_t smem = x_bytes;
    int resident = 0;
    if (vec) {
        kernel = swiglu ? vec_kernel<W, true>(MT) : vec_kernel<W, false>(MT);
        resident = resident_blocks(be, kernel, smem);
        vec = resident > 0;
    }
    std::unique_ptr<CudaBackend::Scratch> normalised;
    if (!vec) {
        kernel = swiglu ? gemv_scalar_kernel<W, true> : gemv_scalar_kernel<W, false>;
        p.x_shared = true;
        resident = resident_blocks(be, kernel, smem);
        if (resident == 0) {  // x does not fit in shared memory: read it from global memory, normalised first
            smem = 0;
            p.x_shared = false;
            resident = resident_blocks(be, kernel, smem);
            if (p.norm) {
                normalised = std::make_unique<CudaBackend::Scratch>(be, x_bytes);
                rms_norm(be, normalised->as<float>(), job.x, job.norm.data, job.norm.dtype, M, K, job.eps);
                p.x = normalised->as<float>();
                p.norm = nullptr;
            }
        }
    }
    const int64_t chunks = vec ? K / E : K;
    int tk = int(kWarp);
    while (tk < kGemvThreads && tk < chunks) tk *= 2;
    p.tk = tk;
    const int group_rows = (vec ? vec_rows(MT) : kScalarRows) / (swiglu ? 2 : 1);
    const int64_t tile_rows = int64_t(kGemvThreads / tk) * group_rows;
    p.tiles = (p.rows + tile_rows - 1) / tile_rows;
    const int64_t blocks = std::min<int64_t>(p.tiles, int64_t(be.multiprocessors()) * std::max(resident, 1));
    // PDL: the weight loads of this GEMV overlap the end of the kernel before it (which in decoding is the previous
    // op of the layer); x, residual and outputs are touched only after pdl_wait().
    launch_pdl(be.compute_capability(), be.stream(), kernel, dim3(unsigned(std::max<int64_t>(blocks, 1))),
               dim3(kGemvThreads), smem, p);
}


template <bool kSwiglu>
GemvKernel q8_kernel(int MT) {
    switch (MT) {
        case 1: return gemv_q8_kernel<1, kSwiglu>;
        case 2: return gemv_q8_kernel<2, kSwiglu>;
        case 4: return gemv_q8_kernel<4, kSwiglu>;
        default: return gemv_q8_kernel<8, kSwiglu>;
    }
}

int padded_rows(int64_t M) { return M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8; }

// Shared memory of the Q8 kernel for M rows of x: their int8 values and f32 block scales.
size_t q8_x_bytes(int64_t M, int64_t K) { return size_t(M * K) + size_t(M * (K / 32)) * sizeof(float); }

void launch_gemv_q8(CudaBackend& be, const GemvJob& job) {
    const bool swiglu = job.up.data != nullptr;
    const int64_t M = job.M, K = job.K;
    require(K % 32 == 0, "q8 GEMV: K = " + std::to_string(K) + " is not whole blocks of 32");
    auto check_planes = [&](const Weight& w, const char* what) {
        if (!aligned16(w.data) || w.scales == nullptr || reinterpret_cast<uintptr_t>(w.scales) % 2 != 0)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
                 std::string("q8 GEMV: the ") + what + " planes are not aligned (int8 plane 16 bytes, scales 2)");
    };
    for (int i = 0; i < job.count; ++i) check_planes(job.proj[i].w, "weight");
    if (swiglu) check_planes(job.up, "up weight");

    GemvParams p{};
    p.K = K;
    p.end0 = job.proj[0].n;
    p.end1 = p.end0 + (job.count > 1 ? job.proj[1].n : 0);
    p.rows = p.end1 + (job.count > 2 ? job.proj[2].n : 0);
    if (job.count < 2) p.end1 = p.rows;
    p.w0 = job.proj[0].w.data;
    p.s0 = job.proj[0].w.scales;
    if (job.count > 1) {
        p.w1 = job.proj[1].w.data;
        p.s1 = job.proj[1].w.scales;
    }
    if (job.count > 2) {
        p.w2 = job.proj[2].w.data;
        p.s2 = job.proj[2].w.scales;
    }
    p.up = job.up.data;
    p.up_scales = job.up.scales;
    p.norm = job.norm.data;
    p.norm_dtype = job.norm.dtype;
    p.eps = job.eps;
    p.bias = job.bias.data;
    p.bias_dtype = job.bias.dtype;

    // Rows of x per launch: all of them when their quantized copy fits in shared memory (always, for the model's
    // K), else as many as fit, one launch (one pass over the weights) per group of rows.
    int64_t rows_per_launch = M;
    for (; rows_per_launch > 0; --rows_per_launch) {
        const int MT = padded_rows(rows_per_launch);
        GemvKernel k = swiglu ? q8_kernel<true>(MT) : q8_kernel<false>(MT);
        if (resident_blocks(be, k, q8_x_bytes(rows_per_launch, K)) > 0) break;
    }
    if (rows_per_launch == 0)
        fail(QWEN3VL_STATUS_UNSUPPORTED, "q8 GEMV: one row of x (K = " + std::to_string(K) +
                                             ") does not fit in shared memory once quantized");
    const int64_t chunks = K / kQ8Chunk;
    int tk = int(kWarp);
    while (tk < kGemvThreads && tk < chunks) tk *= 2;
    p.tk = tk;
    const int64_t tile_rows = int64_t(kGemvThreads / tk) * (kQ8Rows / (swiglu ? 2 : 1));
    p.tiles = (p.rows + tile_rows - 1) / tile_rows;
    const int64_t n1 = p.end1 - p.end0, n2 = p.rows - p.end1;
    for (int64_t m0 = 0; m0 < M; m0 += rows_per_launch) {
        const int64_t mc = std::min(rows_per_launch, M - m0);
        const int MT = padded_rows(mc);
        const size_t smem = q8_x_bytes(mc, K);
        GemvKernel k = swiglu ? q8_kernel<true>(MT) : q8_kernel<false>(MT);
        const int res = resident_blocks(be, k, smem);
        GemvParams q = p;
        q.M = int(mc);
        q.x = job.x + m0 * K;
        q.x_vec = aligned16(q.x);
        q.out0 = job.proj[0].out + m0 * p.end0;
        if (job.count > 1) q.out1 = job.proj[1].out + m0 * n1;
        if (job.count > 2) q.out2 = job.proj[2].out + m0 * n2;
        q.residual = job.residual ? job.residual + m0 * p.rows : nullptr;
        const int64_t blocks = std::min<int64_t>(q.tiles, int64_t(be.multiprocessors()) * std::max(res, 1));
        launch_pdl(be.compute_capability(), be.stream(), k, dim3(unsigned(std::max<int64_t>(blocks, 1))),
                   dim3(kGemvThreads), smem, q);
    }
}

}  // namespace

void gemv(CudaBackend& be, const GemvJob& job) {
    switch (job.proj[0].w.dtype) {
        case QWEN3VL_DTYPE_BF16: launch_gemv<__nv_bfloat16>(be, job); break;
        case QWEN3VL_DTYPE_F16: launch_gemv<__half>(be, job); break;
        case QWEN3VL_DTYPE_Q8: launch_gemv_q8(be, job); break;
        default: launch_gemv<float>(be, job); break;
    }
}

}  // namespace cuda
}  // namespace qwen3vl
