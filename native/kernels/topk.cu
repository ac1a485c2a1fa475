// top_k as a radix selection on distinct 64-bit keys: the value's order in the high half (NaN above +inf, -0 as +0),
// the inverted index in the low half (cpu/reduce.cpp's top_k_key). The k largest keys are the answer, ties included,
// so no step needs a tie rule of its own, and selection moves no arithmetic: every backend gives the same result.
//
// block_threshold finds, among the keys of a range, the smallest t with exactly k keys >= t: 8 bits per pass from the
// top, a 256-bin shared histogram of the keys that match the bits fixed so far, one warp finding the bin that holds
// the k-th largest. It stops as soon as that bin holds exactly the keys still wanted: distinct values need at most
// the 4 passes of the value half, ties go on into the index half. Each pass re-reads the range (4 to 40 KB for
// a part or the parts' keys, served by L1/L2), which keeps registers and shared memory independent of its length.
//
// A decoding step's row (151936 logits) is split into parts of max(1024, 8k) elements, one block each
// (topk_parts_kernel: 149 blocks for k <= 128, 19 for k = 1024), which leave their k best keys in scratch; the row's
// k best are among those. topk_final_kernel then selects the k best of the parts' keys (or, with many rows or a short
// row, of the row itself), sorts them (bitonic, in shared memory) and writes the values and indices.
#include "common.cuh"
#include "topk.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

__device__ __forceinline__ uint64_t top_k_key(float v, int64_t index) {
    unsigned u = __float_as_uint(v);
    const unsigned magnitude = u & 0x7FFFFFFFu;  // bit tests: no float compare, so no flush-to-zero question
    if (magnitude > 0x7F800000u) u = 0xFFFFFFFFu;  // NaN
    else if (magnitude == 0) u = 0x80000000u;      // +0 and -0
    else u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (static_cast<uint64_t>(u) << 32) | (0xFFFFFFFFu - static_cast<unsigned>(index));
}

__device__ __forceinline__ int32_t key_index(uint64_t key) {
    return static_cast<int32_t>(0xFFFFFFFFu - static_cast<unsigned>(key));
}

// Keys of one row of x, element i at index i.
struct RowKeys {
    const float* row;
    __device__ uint64_t operator()(int64_t i) const { return top_k_key(row[i], i); }
};

// Keys already made (the parts' results).
struct StoredKeys {
    const uint64_t* keys;
    __device__ uint64_t operator()(int64_t i) const { return keys[i]; }
};

struct Shared {
    unsigned hist[256];
    unsigned digit, remaining, count;  // the pass's result, from warp 0 to the block
    unsigned taken;                    // block_gather's output counter
};

// hist[bin] += 1. Logits crowd into a few bins of the first pass (their exponents), and shared atomics on one address
// serialise: where the GPU can match lanes (sm_70), the lanes of one bin add once.
__device__ __forceinline__ void histogram_add(unsigned* hist, unsigned bin) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    const unsigned peers = __match_any_sync(__activemask(), bin);
    if ((peers & ((1u << (threadIdx.x % kWarp)) - 1)) == 0) atomicAdd(&hist[bin], static_cast<unsigned>(__popc(peers)));
#else
    atomicAdd(&hist[bin], 1u);
#endif
}

// The smallest t with exactly k of keys(lo .. hi-1) >= t (the keys distinct; 1 <= k <= hi - lo). Every thread of the
// block calls it and gets t.
template <class Keys>
__device__ uint64_t block_threshold(const Keys& keys, int64_t lo, int64_t hi, unsigned k, Shared& sh) {
    uint64_t prefix = 0;  // the bits fixed so far (above shift), zeros below
    unsigned remaining = k;  // keys still wanted among those that match prefix
    for (int shift = 56; shift >= 0; shift -= 8) {
        const uint64_t fixed = shift == 56 ? 0 : ~uint64_t{0} << (shift + 8);
        for (unsigned b = threadIdx.x; b < 256; b += blockDim.x) sh.hist[b] = 0;
        __syncthreads();
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            const uint64_t key = keys(i);
            if ((key & fixed) == prefix) histogram_add(sh.hist, static_cast<unsigned>(key >> shift) & 255);
        }
        __syncthreads();
        if (threadIdx.x < kWarp) {
            // Lane l holds bins 255 - 8l down to 248 - 8l; a scan over the lanes counts the keys in higher bins.
            const unsigned lane = threadIdx.x;
            unsigned c[8], sum = 0;
#pragma unroll
            for (int j = 0; j < 8; ++j) sum += c[j] = sh.hist[255 - 8 * lane - j];
            unsigned above = sum;
#pragma unroll
            for (int o = 1; o < static_cast<int>(kWarp); o <<= 1) {
                const unsigned t = __shfl_up_sync(0xffffffffu, above, o);
                if (lane >= static_cast<unsigned>(o)) above += t;
            }
            above -= sum;
            if (above < remaining && remaining <= above + sum) {
                for (int j = 0; j < 8; ++j) {
                    if (above + c[j] >= remaining) {
                        sh.digit = 255 - 8 * lane - j;
                        sh.remaining = remaining - above;
                        sh.count = c[j];
                        break;
                    }
                    above += c[j];
                }
            }
        }
        __syncthreads();
        // sh.digit / remaining / count are next written after two more barriers; sh.hist was read before this one.
        prefix |= static_cast<uint64_t>(sh.digit) << shift;
        remaining = sh.remaining;
        if (sh.count == remaining) break;  // every key of the bin is wanted: the keys >= prefix are exactly k
    }
    return prefix;
}

// Writes the keys >= t of keys(lo .. hi-1) to out (in no particular order) and returns how many there were.
template <class Keys>
__device__ unsigned block_gather(const Keys& keys, int64_t lo, int64_t hi, uint64_t t, uint64_t* out, Shared& sh) {
    if (threadIdx.x == 0) sh.taken = 0;
    __syncthreads();
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        const uint64_t key = keys(i);
        if (key >= t) out[atomicAdd(&sh.taken, 1u)] = key;
    }
    __syncthreads();
    const unsigned taken = sh.taken;
    __syncthreads();  // sh.taken may be reset by the next call
    return taken;
}

// Part p of row r: [p * span, min((p + 1) * span, n)), one block each; its k best keys to part_keys[(r * parts + p) * k
// ..] (a part shorter than k: all its keys, then zeros, which are below every key).
__global__ void topk_parts_kernel(uint64_t* part_keys, const float* x, int64_t rows, int64_t n, int64_t parts,
                                  int64_t span, unsigned k) {
    __shared__ Shared sh;
    for (int64_t b = blockIdx.x; b < rows * parts; b += gridDim.x) {
        const int64_t r = b / parts, lo = (b % parts) * span, hi = lo + span < n ? lo + span : n;
        const RowKeys keys{x + r * n};
        uint64_t* out = part_keys + b * k;
        if (hi - lo <= static_cast<int64_t>(k)) {
            for (unsigned j = threadIdx.x; j < k; j += blockDim.x) out[j] = lo + j < hi ? keys(lo + j) : 0;
            continue;
        }
        block_gather(keys, lo, hi, block_threshold(keys, lo, hi, k, sh), out, sh);
    }
}

// Sorts s[0 .. size) (a power of two) in descending order.
__device__ void block_sort_descending(uint64_t* s, unsigned size) {
    for (unsigned run = 2; run <= size; run <<= 1) {
        for (unsigned stride = run / 2; stride > 0; stride >>= 1) {
            for (unsigned t = threadIdx.x; t < size / 2; t += blockDim.x) {
                const unsigned i = 2 * t - (t & (stride - 1)), j = i + stride;
                const bool descending = (i & run) == 0;
                const uint64_t a = s[i], b = s[j];
                if ((a < b) == descending) {
                    s[i] = b;
                    s[j] = a;
                }
            }
            __syncthreads();
        }
    }
}

constexpr unsigned kMaxK = QWEN3VL_TOP_K_MAX;

// Row r's k best of keys(0 .. len) (the parts' keys, or the row itself), sorted, as values and indices.
template <bool kFromParts>
__global__ void topk_final_kernel(float* values, int32_t* indices, const float* x, const uint64_t* part_keys,
                                  int64_t rows, int64_t n, int64_t per_row, unsigned k, unsigned sort_size) {
    __shared__ Shared sh;
    __shared__ uint64_t best[kMaxK];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t len = kFromParts ? per_row : n;
        if constexpr (kFromParts) {
            const StoredKeys keys{part_keys + r * per_row};
            block_gather(keys, 0, len, block_threshold(keys, 0, len, k, sh), best, sh);
        } else {
            const RowKeys keys{x + r * n};
            block_gather(keys, 0, len, len == k ? 0 : block_threshold(keys, 0, len, k, sh), best, sh);
        }
        for (unsigned j = k + threadIdx.x; j < sort_size; j += blockDim.x) best[j] = 0;
        __syncthreads();
        block_sort_descending(best, sort_size);
        for (unsigned j = threadIdx.x; j < k; j += blockDim.x) {
            const int32_t i = key_index(best[j]);
            values[r * k + j] = x[r * n + i];
            indices[r * k + j] = i;
        }
        __syncthreads();  // best is refilled for the next row
    }
}

constexpr int64_t kMinSpan = 1024;  // elements per part at least (and 8k): enough work per block to pay for it

}  // namespace

void top_k(CudaBackend& be, float* values, int32_t* indices, const float* x, int64_t rows, int64_t n, int64_t k) {
    if (rows <= 0) return;
    be.activate();
    const unsigned kk = static_cast<unsigned>(k);
    unsigned sort_size = 1;
    while (sort_size < kk) sort_size <<= 1;
    const int64_t span = k * 8 > kMinSpan ? k * 8 : kMinSpan;
    const int64_t parts = (n + span - 1) / span;
    constexpr unsigned kFinalThreads = 512;
    if (rows >= be.multiprocessors() || parts < 4) {
        topk_final_kernel<false><<<grid_rows(rows), kFinalThreads, 0, be.stream()>>>(values, indices, x, nullptr, rows,
                                                                                      n, 0, kk, sort_size);
        QWEN3VL_CUDA_CHECK_LAUNCH();
        return;
    }
    CudaBackend::Scratch part_keys(be, size_t(rows * parts * k) * sizeof(uint64_t));
    topk_parts_kernel<<<grid_rows(rows * parts), 256, 0, be.stream()>>>(part_keys.as<uint64_t>(), x, rows, n, parts,
                                                                        span, kk);
    QWEN3VL_CUDA_CHECK_LAUNCH();
    topk_final_kernel<true><<<grid_rows(rows), kFinalThreads, 0, be.stream()>>>(
        values, indices, x, part_keys.as<uint64_t>(), rows, n, parts * k, kk, sort_size);
    QWEN3VL_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace qwen3vl
