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
//  - Q8 weights (int8 blocks of 32 with an f16 scale) and Q4 weights (super-blocks of 256 nibbles with 6-bit group
//    scales and mins) take their own kernel of the same structure with x quantized per block into shared memory and
//    dp4a dot products (gemv_blocks_kernel below; its comment has the details and the rounding of x). Their rows are
//    always 16-byte aligned; an x whose quantized copy does not fit in shared memory is split into groups of rows,
//    one launch each.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common.cuh"
#include "dtype.h"
#include "gemv.cuh"
#include "q4_arith.h"
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
    // Block formats only: the metadata planes of w0..w2 and of up (Q8: f16 scales [n_s, K / 32]; Q4: 16-byte
    // super-block headers [n_s, K / 256]; w0..w2 and up are then the int8 / nibble planes), and whether x is 16-byte
    // aligned (read as float4s while it is quantized).
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

// ---- Block formats: Q8 (core/quant.h: int8 blocks of 32 along a row, one f16 scale each) and Q4 (super-blocks of
// 256 along a row, 8 groups of 32 unsigned nibbles with a 6-bit scale and min under the super-block's f16 d and dmin)
//
// One kernel for both (gemv_blocks_kernel, the format a traits class: Q8Format, Q4Format), with the same tiles,
// pipeline and reduction as the vector kernel and integer dot products: x is quantized like Q8 weights, per block of
// 32 and per row, once per block of threads into shared memory (stage_x_blocks), and each 16-byte load of a weight
// row meets the matching int8 of each x row in dp4a, whose exact int32 sum is scaled once.
//  - Q8: a load is 16 int8, half a block (lanes 2i and 2i + 1 of a row group read the two halves of one block, so
//    consecutive lanes read consecutive 16 bytes), four dp4a against the 16 int8 of x, acc += float(sum) * (dw * dx),
//    dw the weight block's f16 scale (a 2-byte load beside the 16 bytes) and dx the x block's f32 scale (per half
//    block: the same sum as per block, one more rounding).
//  - Q4: a load is one group, 32 nibbles (q4arith::split: the low nibbles are elements 0..15, the high ones 16..31,
//    each a non-negative int8 for the signed dp4a), eight dp4a against the group's 32 int8 of x, then
//    acc += float(I) * (a * dx) and acc -= m * (dx * X) (q4_arith.h: a = d sc, m = dmin mn exact in f32, X the
//    sum of the x block's int8, computed when x is quantized). The 16-byte super-block header is shared by the 8
//    lanes reading its groups (consecutive lanes, consecutive groups): each loads one of its four 32-bit words (lane
//    i word i % 4, so the 8 loads are one 16-byte transaction and the 4 words each arrive in one register) and the
//    three words a lane needs come by shuffles (Q4Format::prepare). x is staged with the first and second halves of
//    its blocks in separate planes, so the two 16-byte reads of consecutive lanes are consecutive (no bank
//    conflicts), and the block's dx and dx X side by side (one 8-byte read).
// kBlockRows = 4 rows per group at every M: a Q8 row is half as many bytes as in bf16, so tiles of 8 rows at K = 2048
// (256 of them for a 2048-row matrix, about one per resident block of an H100/H200) with 2 x 4 loads of 16 bytes in
// flight per thread (64 KB per SM at two blocks); a Q4 row of K = 2048 is 64 loads (tiles of 16 rows, 128 of them for
// 2048 rows, each block's share of the matrix requested at once). 8 rows per group at M = 1, as the bf16 kernel,
// would need 32 more registers for the row and scale pointers and spills at the 128 that two blocks per SM allow.
//
// The quantization of x (the contract the tests reproduce): per row m and block b of 32, amax = max |y|
// over the block, dx = amax / 127 (f32, rounded to nearest), q = rint(y / dx) (f32 division rounded to nearest, then
// to nearest even integer), clamped to +-127, q = 0 where dx = 0; y = x, or with the norm y = (x * inv_rms) * w as
// in stage_x. For Q4 also X = sum of the block's q (exact) and dsx = dx * X (f32, rounded to nearest). A block holding
// a NaN or an infinity gets dx = NaN (and q = 0, dsx = NaN), so its row's outputs are NaN as the dense kernels' would
// be non-finite. Per element |y - dx q| <= dx / 2 (1 + 2^-16) (the division's rounding; dx in f32's normal range, max
// |y| above ~2e-36), so an output moves by at most sum_b dx_b / 2 sum_{k in b} |w_k| from the product with
// unquantized y: the activation's rounding, ~0.4% relative RMS for blocks of uniform values, the same order as the
// Q8 weights' own (Q4's are ~7%).
constexpr int kBlockRows = 4;

__device__ __forceinline__ float f16_bits(unsigned short h) { return __half2float(__ushort_as_half(h)); }

struct Q8Format {
    static constexpr const char* kName = "q8";
    static constexpr const char* kPlanes = "int8 plane 16 bytes, scales 2";
    static constexpr int64_t kBlockK = 32;  // K is a multiple of this
    static constexpr int kChunk = 16;       // weights per 16-byte load
    static constexpr int kXEntry = 4;       // shared-memory bytes per block of x: f32 dx
    static constexpr bool kSums = false;    // no block sums of x
    static constexpr uintptr_t kMetaAlign = 2;
    __host__ __device__ static constexpr int64_t row_bytes(int64_t K) { return K; }
    __host__ __device__ static constexpr int64_t meta_row_bytes(int64_t K) { return K / 32 * 2; }
    // The metadata of chunk c of a row: its block's f16 scale.
    __device__ static unsigned load_meta(const uint8_t* s, int64_t c) {
        return __ldg(reinterpret_cast<const unsigned short*>(s) + (c >> 1));
    }
    struct Row {
        uint4 q;
        float dw;
    };
    __device__ static Row prepare(const uint4& q, unsigned meta, unsigned) {
        return Row{q, f16_bits(static_cast<unsigned short>(meta))};
    }
    // x in shared memory: int8 [M, K] row-major, f32 dx [M, K / 32].
    __device__ static int64_t x_offset(int64_t flat, int64_t) { return flat; }
    __device__ static void store_scale(float* xd, int64_t block, float dx, int) { xd[block] = dx; }
    struct X {
        uint4 q;
        float dx;
    };
    __device__ static X load_x(const int8_t* xq, const float* xd, int m, int64_t c, int64_t K) {
        return X{*reinterpret_cast<const uint4*>(xq + int64_t(m) * K + c * kChunk), xd[int64_t(m) * (K / 32) + (c >> 1)]};
    }
    __device__ static float fma(float acc, const Row& w, const X& x) {
        int s = q4arith::dot4(w.q.x, x.q.x, 0);
        s = q4arith::dot4(w.q.y, x.q.y, s);
        s = q4arith::dot4(w.q.z, x.q.z, s);
        s = q4arith::dot4(w.q.w, x.q.w, s);
        return fmaf(static_cast<float>(s), w.dw * x.dx, acc);
    }
};

struct Q4Format {
    static constexpr const char* kName = "q4";
    static constexpr const char* kPlanes = "nibble plane 16 bytes, headers 4";
    static constexpr int64_t kBlockK = 256;
    static constexpr int kChunk = 32;     // one group: 16 bytes of nibbles
    static constexpr int kXEntry = 8;     // f32 dx and dsx = dx * X
    static constexpr bool kSums = true;
    static constexpr uintptr_t kMetaAlign = 4;
    __host__ __device__ static constexpr int64_t row_bytes(int64_t K) { return K / 2; }
    __host__ __device__ static constexpr int64_t meta_row_bytes(int64_t K) { return K / 256 * 16; }
    // Word c % 4 of the header of chunk c's super-block (chunk c is read by a lane with lane % 8 == c % 8, and the
    // 8 lanes of one super-block are lanes 8i .. 8i + 7 of a warp: tk is a multiple of 32, K of 256).
    __device__ static unsigned load_meta(const uint8_t* s, int64_t c) {
        return __ldg(reinterpret_cast<const unsigned*>(s + (c >> 3) * 16) + (c & 3));
    }
    struct Row {
        q4arith::Nibbles n;
        float a, m;
    };
    // Takes the header words h[0], h[scale_word(g)] and h[3] from the lanes of the super-block that loaded them
    // (group g = lane % 8). Every lane of the warp must call it (shuffles), dead ones with meta 0.
    __device__ static Row prepare(const uint4& q, unsigned meta, unsigned lane) {
        const int base = int(lane & ~7u), g = int(lane & 7u);
        const unsigned h0 = __shfl_sync(0xffffffffu, meta, base);
        const unsigned hs = __shfl_sync(0xffffffffu, meta, base + q4arith::scale_word(g));
        const unsigned h3 = __shfl_sync(0xffffffffu, meta, base + 3);
        int sc, mn;
        q4arith::group_scale_min(hs, h3, g, &sc, &mn);
        const float d = f16_bits(static_cast<unsigned short>(h0 & 0xffffu));
        const float dmin = f16_bits(static_cast<unsigned short>(h0 >> 16));
        return Row{q4arith::split(q.x, q.y, q.z, q.w), __fmul_rn(d, float(sc)), __fmul_rn(dmin, float(mn))};
    }
    // x in shared memory: per row, the first halves (elements 0..15) of all blocks of 32 in order, then the second
    // halves; then float2 {dx, dsx} [M, K / 32]. flat: m * K + k of the first of 8 elements (k a multiple of 8).
    __device__ static int64_t x_offset(int64_t flat, int64_t K) {
        const int64_t m = flat / K, k = flat - m * K;
        return m * K + ((k >> 4) & 1) * (K / 2) + (k >> 5) * 16 + (k & 15);
    }
    __device__ static void store_scale(float* xd, int64_t block, float dx, int sum) {
        reinterpret_cast<float2*>(xd)[block] = make_float2(dx, __fmul_rn(dx, static_cast<float>(sum)));
    }
    struct X {
        unsigned lo[4], hi[4];
        float dx, dsx;
    };
    __device__ static X load_x(const int8_t* xq, const float* xd, int m, int64_t c, int64_t K) {
        const int8_t* row = xq + int64_t(m) * K;
        const uint4 lo = *reinterpret_cast<const uint4*>(row + c * 16);
        const uint4 hi = *reinterpret_cast<const uint4*>(row + K / 2 + c * 16);
        const float2 d = reinterpret_cast<const float2*>(xd)[int64_t(m) * (K / 32) + c];
        return X{{lo.x, lo.y, lo.z, lo.w}, {hi.x, hi.y, hi.z, hi.w}, d.x, d.y};
    }
    __device__ static float fma(float acc, const Row& w, const X& x) {
        return q4arith::group_accumulate(acc, q4arith::group_dot(w.n, x.lo, x.hi), w.a, w.m, x.dx, x.dsx);
    }
};

// Row n of the virtual matrix: its weight-plane row and its metadata row.
template <class F>
__device__ __forceinline__ void block_row(const GemvParams& p, int64_t n, const uint8_t*& q, const uint8_t*& s) {
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
    q = static_cast<const uint8_t*>(w) + r * F::row_bytes(p.K);
    s = static_cast<const uint8_t*>(sc) + r * F::meta_row_bytes(p.K);
}

// The NR rows a row group streams for tile `tile` (as tile_rows): R output rows, for swiglu their up rows after them.
template <class F, int NR, bool kSwiglu>
__device__ __forceinline__ void block_tile_rows(const GemvParams& p, int64_t tile, int g, const uint8_t* (&q)[NR],
                                                const uint8_t* (&s)[NR]) {
    constexpr int R = kSwiglu ? NR / 2 : NR;
    const int groups = kGemvThreads / p.tk;
    const int64_t n0 = (tile * groups + g) * R;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int64_t n = n0 + r;
        q[r] = nullptr;
        s[r] = nullptr;
        if (n < p.rows) block_row<F>(p, n, q[r], s[r]);
        if constexpr (kSwiglu) {
            q[R + r] = n < p.rows ? static_cast<const uint8_t*>(p.up) + n * F::row_bytes(p.K) : nullptr;
            s[R + r] = n < p.rows ? static_cast<const uint8_t*>(p.up_scales) + n * F::meta_row_bytes(p.K) : nullptr;
        }
    }
}

// Quantizes the M rows of x (normalised first when the op has a norm, as stage_x) into xq (int8, M K) and xd (the
// x-block entries of F: M K / 32 of them), by the contract above. Four threads per block of 32, 8 elements each (two
// float4 loads when x is 16-byte aligned); a thread's tasks are loaded two at a time before they are reduced, so
// their loads overlap. `red` holds kGemvWarps * MT floats. Ends with a barrier.
template <class F, int MT>
__device__ void stage_x_blocks(const GemvParams& p, int8_t* xq, float* xd, float* red) {
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
            // Lanes past the tasks hold zeros: dx = 0, q = 0 (they still take part in the shuffles).
            const float dx = __fdiv_rn(amax, 127.0f);
            unsigned packed[2] = {0u, 0u};
            int sum = 0;
            if (!bad && dx > 0.0f) {
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const float q = fminf(fmaxf(rintf(__fdiv_rn(v[i][e], dx)), -127.0f), 127.0f);
                    packed[e / 4] |= (unsigned(int(q)) & 0xffu) << (8 * (e % 4));
                    sum += int(q);
                }
            }
            if constexpr (F::kSums) {
#pragma unroll
                for (int o = 1; o <= 2; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            }
            if (!mine) continue;
            *reinterpret_cast<uint2*>(xq + F::x_offset(8 * t, K)) = make_uint2(packed[0], packed[1]);
            if ((threadIdx.x & 3u) == 0) F::store_scale(xd, (8 * t) / 32, bad ? __int_as_float(0x7fc00000) : dx, sum);
        }
    }
    __syncthreads();
}

// The block-format kernel, M <= MT (every Q8 and Q4 row is 16-byte aligned: K is a multiple of F::kBlockK and the
// planes start aligned).
template <class F, int MT, bool kSwiglu>
__global__ void __launch_bounds__(kGemvThreads, kGemvMinBlocks) gemv_blocks_kernel(const GemvParams p) {
    constexpr int NR = kBlockRows, V = NR * MT;
    static_assert(V <= 32 && (V & (V - 1)) == 0, "the reduction takes a power of two up to 32 values");
    extern __shared__ float4 x_shared[];
    __shared__ float red[2 * kGemvWarps * V];
    int8_t* xq = reinterpret_cast<int8_t*>(x_shared);
    float* xd = reinterpret_cast<float*>(xq + int64_t(p.M) * p.K);  // M K is a multiple of 32

    const int tk = p.tk, g = int(threadIdx.x) / tk;
    const int64_t j = int64_t(threadIdx.x) % tk;
    const unsigned lane = threadIdx.x % kWarp;
    const int64_t chunks = p.K / F::kChunk;
    const int64_t steps = chunks > tk ? (chunks + tk - 1) / tk : 1;

    const uint8_t* qp[NR];
    const uint8_t* sp[NR];
    uint4 a[NR], b[NR];
    unsigned sa[NR], sb[NR];
    float acc[NR][MT];
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int m = 0; m < MT; ++m) acc[r][m] = 0.0f;

    int64_t lt = blockIdx.x, ls = 0;
    auto load_step = [&](uint4(&buf)[NR], unsigned(&meta)[NR]) {
        if (lt >= p.tiles) return;
        if (ls == 0) block_tile_rows<F, NR, kSwiglu>(p, lt, g, qp, sp);
        const int64_t c = j + ls * tk;
#pragma unroll
        for (int r = 0; r < NR; ++r) {
            const bool live = qp[r] != nullptr && c < chunks;
            buf[r] = live ? load_weights(qp[r] + c * 16) : make_uint4(0u, 0u, 0u, 0u);
            meta[r] = live ? F::load_meta(sp[r], c) : 0u;
        }
        if (++ls == steps) {
            ls = 0;
            lt += gridDim.x;
        }
    };
    int64_t ct = blockIdx.x, cs = 0;
    int parity = 0;
    auto compute_step = [&](const uint4(&buf)[NR], const unsigned(&meta)[NR]) {
        const int64_t c = j + cs * tk;
        typename F::Row w[NR];
#pragma unroll
        for (int r = 0; r < NR; ++r) w[r] = F::prepare(buf[r], meta[r], lane);  // by every lane (Q4's shuffles)
        if (c < chunks) {
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                if (m >= p.M) continue;
                const typename F::X xv = F::load_x(xq, xd, m, c, p.K);
#pragma unroll
                for (int r = 0; r < NR; ++r) acc[r][m] = F::fma(acc[r][m], w[r], xv);
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
    stage_x_blocks<F, MT>(p, xq, xd, red);
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


template <class F, bool kSwiglu>
GemvKernel block_kernel(int MT) {
    switch (MT) {
        case 1: return gemv_blocks_kernel<F, 1, kSwiglu>;
        case 2: return gemv_blocks_kernel<F, 2, kSwiglu>;
        case 4: return gemv_blocks_kernel<F, 4, kSwiglu>;
        default: return gemv_blocks_kernel<F, 8, kSwiglu>;
    }
}

int padded_rows(int64_t M) { return M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8; }

// Shared memory of the block-format kernel for M rows of x: their int8 values and the per-block entries.
template <class F>
size_t block_x_bytes(int64_t M, int64_t K) {
    return size_t(M * K) + size_t(M * (K / 32)) * F::kXEntry;
}

template <class F>
void launch_gemv_blocks(CudaBackend& be, const GemvJob& job) {
    const bool swiglu = job.up.data != nullptr;
    const int64_t M = job.M, K = job.K;
    if (K % F::kBlockK != 0)
        fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(F::kName) + " GEMV: K = " + std::to_string(K) +
                                                  " is not whole blocks of " + std::to_string(F::kBlockK));
    auto check_planes = [&](const Weight& w, const char* what) {
        if (!aligned16(w.data) || w.scales == nullptr || reinterpret_cast<uintptr_t>(w.scales) % F::kMetaAlign != 0)
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, std::string(F::kName) + " GEMV: the " + what +
                                                      " planes are not aligned (" + F::kPlanes + ")");
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
        GemvKernel k = swiglu ? block_kernel<F, true>(MT) : block_kernel<F, false>(MT);
        if (resident_blocks(be, k, block_x_bytes<F>(rows_per_launch, K)) > 0) break;
    }
    if (rows_per_launch == 0)
        fail(QWEN3VL_STATUS_UNSUPPORTED, std::string(F::kName) + " GEMV: one row of x (K = " + std::to_string(K) +
                                             ") does not fit in shared memory once quantized");
    const int64_t chunks = K / F::kChunk;
    int tk = int(kWarp);
    while (tk < kGemvThreads && tk < chunks) tk *= 2;
    p.tk = tk;
    const int64_t tile_rows = int64_t(kGemvThreads / tk) * (kBlockRows / (swiglu ? 2 : 1));
    p.tiles = (p.rows + tile_rows - 1) / tile_rows;
    const int64_t n1 = p.end1 - p.end0, n2 = p.rows - p.end1;
    for (int64_t m0 = 0; m0 < M; m0 += rows_per_launch) {
        const int64_t mc = std::min(rows_per_launch, M - m0);
        const int MT = padded_rows(mc);
        const size_t smem = block_x_bytes<F>(mc, K);
        GemvKernel k = swiglu ? block_kernel<F, true>(MT) : block_kernel<F, false>(MT);
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
        case QWEN3VL_DTYPE_Q8: launch_gemv_blocks<Q8Format>(be, job); break;
        case QWEN3VL_DTYPE_Q4: launch_gemv_blocks<Q4Format>(be, job); break;
        default: launch_gemv<float>(be, job); break;
    }
}

}  // namespace cuda
}  // namespace qwen3vl
