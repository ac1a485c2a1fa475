#include "attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "dtype.h"
#include "nn_common.h"
#include "quant.h"

namespace qwen3vl {
namespace cpu {

namespace {

constexpr int64_t kKeyTile = 64;
constexpr int64_t kQueryRows = 32;  // query rows (tokens x heads of a group) per task

struct Block {
    int64_t t0, t1;          // query tokens
    int64_t key0, key_end;   // keys seen by the block's last token: [key0, key_end)
};

float* thread_scratch(size_t n) {
    thread_local std::vector<float> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

}  // namespace

void attention_tile_scalar(const float* q, const float* K, int64_t ldk, const float* V, int64_t ldv, int64_t n,
                           int64_t D, float scale, float* scores, float& m, float& l, float* acc) {
    float tile_max = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
        const float* kr = K + j * ldk;
        float s = 0.0f;
        for (int64_t d = 0; d < D; ++d) s += q[d] * kr[d];
        scores[j] = s * scale;
        tile_max = std::max(tile_max, scores[j]);
    }
    const float m_new = std::max(m, tile_max);
    const float corr = std::exp(m - m_new);  // 0 on the first tile (m = -inf)
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
        scores[j] = std::exp(scores[j] - m_new);
        sum += scores[j];
    }
    l = l * corr + sum;
    m = m_new;
    for (int64_t d = 0; d < D; ++d) acc[d] *= corr;
    for (int64_t j = 0; j < n; ++j) {
        const float p = scores[j];
        const float* vr = V + j * ldv;
        for (int64_t d = 0; d < D; ++d) acc[d] += p * vr[d];
    }
}

void attention_load_row_scalar(float* dst, const void* src, qwen3vl_dtype t, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = load_f32(src, t, static_cast<size_t>(i));
}

void attention_load_row_q8_scalar(float* dst, const int8_t* q, const uint16_t* d, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(d[i / kQ8Block]) * static_cast<float>(q[i]);
}

void attention(ThreadPool& pool, const AttentionArgs& a, CpuKernels k) {
    const int64_t D = a.head_dim, G = a.q_heads / a.kv_heads;
    const int64_t block_tokens = std::max<int64_t>(1, kQueryRows / G);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
    const auto tile = k == CpuKernels::Avx2 ? attention_tile_avx2 : attention_tile_scalar;
    const auto load_row = k == CpuKernels::Avx2 ? attention_load_row_avx2 : attention_load_row_scalar;
    const auto load_row_q8 = k == CpuKernels::Avx2 ? attention_load_row_q8_avx2 : attention_load_row_q8_scalar;
    const bool q8 = a.kv_dtype == QWEN3VL_DTYPE_Q8;

    std::vector<Block> blocks;
    if (a.causal) {
        for (int64_t t0 = 0; t0 < a.tokens; t0 += block_tokens) {
            const int64_t t1 = std::min(a.tokens, t0 + block_tokens);
            blocks.push_back({t0, t1, 0, a.n_past + t1});
        }
    } else {
        for (int64_t s = 0; s < a.n_segments; ++s)
            for (int64_t t0 = a.segments[s]; t0 < a.segments[s + 1]; t0 += block_tokens)
                blocks.push_back({t0, std::min<int64_t>(a.segments[s + 1], t0 + block_tokens), a.segments[s],
                                  a.segments[s + 1]});
    }
    // Longest blocks first: with causal masking the last blocks see the most keys.
    std::stable_sort(blocks.begin(), blocks.end(), [](const Block& x, const Block& y) {
        return x.key_end - x.key0 > y.key_end - y.key0;
    });

    const size_t esize = dtype_size(a.kv_dtype);
    const int64_t rows_max = block_tokens * G;
    const size_t scratch_floats = static_cast<size_t>(rows_max * (D + 2) + kKeyTile + 8 + 2 * kKeyTile * D);
    const size_t tasks = blocks.size() * static_cast<size_t>(a.kv_heads);

    pool.parallel_for(tasks, [&](size_t task, int) {
        const Block& b = blocks[task / static_cast<size_t>(a.kv_heads)];
        const int64_t g = static_cast<int64_t>(task % static_cast<size_t>(a.kv_heads));
        const int64_t rows = (b.t1 - b.t0) * G;
        float* acc = thread_scratch(scratch_floats);
        float* m = acc + rows_max * D;
        float* l = m + rows_max;
        float* scores = l + rows_max;
        float* kt = scores + kKeyTile + 8;
        float* vt = kt + kKeyTile * D;
        std::fill(acc, acc + rows * D, 0.0f);
        std::fill(m, m + rows, -INFINITY);
        std::fill(l, l + rows, 0.0f);

        for (int64_t j0 = b.key0; j0 < b.key_end; j0 += kKeyTile) {
            const int64_t j1 = std::min(b.key_end, j0 + kKeyTile);
            // The tile is packed to contiguous f32 rows (and converted from a 16-bit cache) once per task: the
            // cache rows are Hkv * D apart (4 KiB for 8 heads of 128: every row on its own page and L1 set), and
            // every query row of the block then reads the tile from L1/L2.
            for (int64_t j = j0; j < j1; ++j) {
                const size_t e = static_cast<size_t>(j * a.kv_stride + g * D);
                if (q8) {  // int8 values at element e, its blocks' scales at e / 32 (D a multiple of 32)
                    load_row_q8(kt + (j - j0) * D, static_cast<const int8_t*>(a.k) + e, a.k_scales + e / kQ8Block, D);
                    load_row_q8(vt + (j - j0) * D, static_cast<const int8_t*>(a.v) + e, a.v_scales + e / kQ8Block, D);
                    continue;
                }
                load_row(kt + (j - j0) * D, static_cast<const char*>(a.k) + e * esize, a.kv_dtype, D);
                load_row(vt + (j - j0) * D, static_cast<const char*>(a.v) + e * esize, a.kv_dtype, D);
            }
            for (int64_t t = b.t0; t < b.t1; ++t) {
                const int64_t visible = a.causal ? std::min(j1, a.n_past + t + 1) - j0 : j1 - j0;
                if (visible <= 0) continue;
                for (int64_t gi = 0; gi < G; ++gi) {
                    const int64_t r = (t - b.t0) * G + gi;
                    const float* qr = a.q + t * a.q_stride + (g * G + gi) * D;
                    tile(qr, kt, D, vt, D, visible, D, scale, scores, m[r], l[r], acc + r * D);
                }
            }
        }
        for (int64_t t = b.t0; t < b.t1; ++t)
            for (int64_t gi = 0; gi < G; ++gi) {
                const int64_t r = (t - b.t0) * G + gi;
                float* o = a.out + (t * a.q_heads + g * G + gi) * D;
                const float inv = 1.0f / l[r];
                for (int64_t d = 0; d < D; ++d) o[d] = acc[r * D + d] * inv;
            }
    });
}

}  // namespace cpu
}  // namespace qwen3vl
