// The embedding ops (native/core/ops.h, QWEN3VL_EMBEDDING_OPS): embedding (a gather of table rows), scatter_rows and
// the vision position_embedding (bilinear interpolation of a square table). The suites and helpers are described in
// op_test_util.h.
//
// Tolerances. Gathers and scatters copy (or add) values: exact, on the CPU and CUDA against the CPU. The position
// embedding is bit-exact with transformers' f32 steps on the CPU and within NMSE 1e-9 of an exact interpolation (its
// test says why); CUDA against the CPU: 1e-12 (four f32 products and a sum per element).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "dtype.h"
#include "embedding.h"
#include "op_test_util.h"
#include "quant.h"
#include "reference_util.h"

namespace {

using namespace qwen3vl;
using namespace qwen3vl::testing;

// ---- CPU kernels ------------------------------------------------------------------------------------------------

TEST(EmbeddingOps, GatherAndScatterAreExact) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (qwen3vl_dtype wt : kWeightDtypes) {
        const int64_t vocab = 50, width = 37, tokens = 13;
        const Stored table = make_stored(rng, wt, vocab * width);
        std::vector<int32_t> ids(tokens);
        for (auto& i : ids) i = rng.integer(0, vocab - 1);
        std::vector<float> out(tokens * width, kNaN);
        cpu::embedding(pool(), out.data(), table.data(), wt, nullptr, ids.data(), tokens, width);
        for (int64_t t = 0; t < tokens; ++t)
            for (int64_t c = 0; c < width; ++c) ASSERT_EQ(out[t * width + c], table.values[ids[t] * width + c]);
    }
    const int64_t rows = 20, width = 9;
    const std::vector<float> x0 = rng.vec(rows * width), src = rng.vec(4 * width);
    const std::vector<int32_t> at = {17, 2, 3, 11};
    for (bool acc : {false, true}) {
        std::vector<float> x = x0;
        cpu::scatter_rows(pool(), x.data(), at.data(), src.data(), 4, width, acc);
        std::vector<float> want = x0;
        for (int r = 0; r < 4; ++r)
            for (int c = 0; c < width; ++c)
                want[at[r] * width + c] = acc ? want[at[r] * width + c] + src[r * width + c] : src[r * width + c];
        EXPECT_EQ(x, want);
    }
}

TEST(EmbeddingOps, LinspaceFollowsPyTorchsKernel) {
    // torch.linspace(0, 47, n) computes the second half downwards from the end: the last value is exactly 47 and
    // the middle is symmetric; values checked here are the ones torch prints for n = 20 and n = 3.
    EXPECT_EQ(cpu::linspace_f32(47.0f, 20, 19), 47.0f);
    EXPECT_EQ(cpu::linspace_f32(47.0f, 20, 0), 0.0f);
    EXPECT_EQ(cpu::linspace_f32(47.0f, 3, 1), 23.5f);
    EXPECT_EQ(cpu::linspace_f32(47.0f, 1, 0), 0.0f);
    for (int64_t n : {14, 20, 48, 97})
        for (int64_t i = 0; i < n; ++i)
            EXPECT_NEAR(cpu::linspace_f32(47.0f, n, i), 47.0 * i / (n - 1), 1e-5) << n << " " << i;
}

// transformers' fast_pos_embed_interpolate for one image (t = 1), step by step in f32 as torch runs it.
std::vector<float> fast_pos_embed_interpolate(const std::vector<float>& table, int64_t side, int64_t width, int64_t h,
                                              int64_t w, int64_t merge) {
    auto linspace = [&](int64_t n) {
        std::vector<float> v(n);
        if (n == 1) return std::vector<float>{0.0f};
        const float end = float(side - 1), step = end / float(n - 1);
        for (int64_t i = 0; i < n; ++i) v[i] = i < n / 2 ? 0.0f + step * float(i) : end - step * float(n - i - 1);
        return v;
    };
    const std::vector<float> hs = linspace(h), ws = linspace(w);
    std::vector<float> grid(h * w * width);  // row-major (y, x), before the merge permutation
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            const int32_t hf = int32_t(hs[y]), wf = int32_t(ws[x]);
            const int64_t hc = std::min<int64_t>(hf + 1, side - 1), wc = std::min<int64_t>(wf + 1, side - 1);
            const float dh = hs[y] - float(hf), dw = ws[x] - float(wf);
            const int64_t idx[4] = {hf * side + wf, hf * side + wc, hc * side + wf, hc * side + wc};
            const float wt[4] = {(1 - dh) * (1 - dw), (1 - dh) * dw, dh * (1 - dw), dh * dw};
            for (int64_t c = 0; c < width; ++c) {
                float p[4];
                for (int i = 0; i < 4; ++i) p[i] = table[idx[i] * width + c] * wt[i];
                grid[(y * w + x) * width + c] = p[0] + p[1] + p[2] + p[3];
            }
        }
    // view(h/m, m, w/m, m, C).permute(0, 2, 1, 3, 4)
    std::vector<float> out;
    for (int64_t bh = 0; bh < h / merge; ++bh)
        for (int64_t bw = 0; bw < w / merge; ++bw)
            for (int64_t ih = 0; ih < merge; ++ih)
                for (int64_t iw = 0; iw < merge; ++iw) {
                    const int64_t y = bh * merge + ih, x = bw * merge + iw;
                    out.insert(out.end(), grid.begin() + (y * w + x) * width, grid.begin() + (y * w + x + 1) * width);
                }
    return out;
}

TEST(EmbeddingOps, PositionEmbeddingIsTransformersInterpolation) {
    Rng rng;
    SCOPED_TRACE(rng.trace());
    const int64_t side = 48, width = 8;
    const std::vector<float> table = rng.vec(side * side * width);
    struct Case {
        int64_t h, w, merge;
    };
    for (const Case& c : {Case{14, 20, 2}, Case{20, 14, 2}, Case{48, 48, 2}, Case{3, 5, 1}, Case{2, 2, 2}}) {
        SCOPED_TRACE(std::to_string(c.h) + "x" + std::to_string(c.w) + " merge " + std::to_string(c.merge));
        std::vector<float> out(c.h * c.w * width, kNaN);
        cpu::position_embedding(pool(), out.data(), table.data(), QWEN3VL_DTYPE_F32, side, width, c.h, c.w, c.merge);
        // Bit-exact with the f32 steps of transformers.
        EXPECT_EQ(out, fast_pos_embed_interpolate(table, side, width, c.h, c.w, c.merge));
        // And close to align-corners bilinear interpolation in double (coordinates differ by the f32 linspace).
        std::vector<double> want;
        for (int64_t bh = 0; bh < c.h / c.merge; ++bh)
            for (int64_t bw = 0; bw < c.w / c.merge; ++bw)
                for (int64_t ih = 0; ih < c.merge; ++ih)
                    for (int64_t iw = 0; iw < c.merge; ++iw) {
                        const int64_t y = bh * c.merge + ih, x = bw * c.merge + iw;
                        const double fy = c.h > 1 ? 47.0 * y / (c.h - 1) : 0, fx = c.w > 1 ? 47.0 * x / (c.w - 1) : 0;
                        const int64_t y0 = std::min<int64_t>(int64_t(fy), 46), x0 = std::min<int64_t>(int64_t(fx), 46);
                        const double ty = fy - y0, tx = fx - x0;
                        for (int64_t ch = 0; ch < width; ++ch) {
                            auto at = [&](int64_t yy, int64_t xx) { return double(table[(yy * side + xx) * width + ch]); };
                            want.push_back((1 - ty) * (1 - tx) * at(y0, x0) + (1 - ty) * tx * at(y0, x0 + 1) +
                                           ty * (1 - tx) * at(y0 + 1, x0) + ty * tx * at(y0 + 1, x0 + 1));
                        }
                    }
        // f32 sample points are off by up to ~47 * 2^-24: with neighbouring entries differing by ~1, 1e-9.
        EXPECT_LT(nmse(out, want), 1e-9);
    }
    // 48 x 48 samples the table's own points: the output is the table in merge-window order, exactly.
    std::vector<float> out(side * side * width, kNaN);
    cpu::position_embedding(pool(), out.data(), table.data(), QWEN3VL_DTYPE_F32, side, width, side, side, 2);
    EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + width), std::vector<float>(table.begin(), table.begin() + width));
    EXPECT_EQ(std::vector<float>(out.begin() + 2 * width, out.begin() + 3 * width),
              std::vector<float>(table.begin() + side * width, table.begin() + (side + 1) * width));
}

// ---- C API ------------------------------------------------------------------------------------------------------

class EmbeddingOpsCApi : public CApiOpTest {};

TEST_F(EmbeddingOpsCApi, NullTensorsAreNamed) {
    qwen3vl_tensor* x = f32({2, 8});
    EXPECT_INVALID(qwen3vl_op_embedding(x, x, nullptr), "qwen3vl_op_embedding: ids is NULL");
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, nullptr, x, 0), "qwen3vl_op_scatter_rows: rows is NULL");
    EXPECT_INVALID(qwen3vl_op_position_embedding(x, nullptr, 2, 2, 2), "qwen3vl_op_position_embedding: table is NULL");
}

TEST_F(EmbeddingOpsCApi, AliasingRulesAreEnforced) {
    qwen3vl_tensor* buf = f32({17});
    qwen3vl_tensor* a = view(buf, 0, {2, 8});
    EXPECT_INVALID(qwen3vl_op_scatter_rows(a, i32({1}, {0}), view(buf, 8, {1, 8}), 0), "src overlaps x");
}

TEST_F(EmbeddingOpsCApi, IndexRangesAreChecked) {
    qwen3vl_tensor* table = f32({50, 4});
    EXPECT_INVALID(qwen3vl_op_embedding(f32({3, 4}), table, i32({3}, {1, 50, 2})),
                   "qwen3vl_op_embedding: ids[1] = 50 is outside the table's 50 rows");
    EXPECT_INVALID(qwen3vl_op_embedding(f32({1, 4}), table, i32({1}, {-1})), "ids[0] = -1");
    EXPECT_INVALID(qwen3vl_op_embedding(f32({3, 5}), table, i32({3}, {0, 0, 0})), "out has shape [3, 5], expected [3, 4]");
    qwen3vl_tensor* x = f32({6, 4});
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, i32({2}, {1, 6}), f32({2, 4}), 0), "rows[1] = 6 is outside x's 6 rows");
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, i32({2}, {3, 3}), f32({2, 4}), 1), "rows[1] = 3 repeats");
    EXPECT_INVALID(qwen3vl_op_scatter_rows(x, i32({1}, {3}), f32({1, 4}), 5), "accumulate must be 0 or 1");
}

TEST_F(EmbeddingOpsCApi, PositionEmbeddingArgumentsAreChecked) {
    EXPECT_INVALID(qwen3vl_op_position_embedding(f32({4, 3}), f32({10, 3}), 2, 2, 2), "table has 10 rows, not a square grid");
    EXPECT_INVALID(qwen3vl_op_position_embedding(f32({15, 3}), f32({16, 3}), 3, 5, 2),
                   "grid 3 x 5 must be positive multiples of merge 2");
    EXPECT_INVALID(qwen3vl_op_position_embedding(f32({15, 4}), f32({16, 3}), 3, 5, 1), "out has shape [15, 4], expected [15, 3]");
}

TEST_F(EmbeddingOpsCApi, OpsRunEndToEnd) {
    // embedding then scatter back.
    qwen3vl_tensor* table = f32({3, 2}, {0, 1, 10, 11, 20, 21});
    qwen3vl_tensor* e = f32({2, 2}, kNaN);
    ASSERT_EQ(qwen3vl_op_embedding(e, table, i32({2}, {2, 0})), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(e), (std::vector<float>{20, 21, 0, 1}));
    ASSERT_EQ(qwen3vl_op_scatter_rows(table, i32({1}, {1}), view(e, 0, {1, 2}), 1), QWEN3VL_STATUS_OK);
    EXPECT_EQ(read(table), (std::vector<float>{0, 1, 30, 32, 20, 21}));

    // A 2x2 table sampled on a 2x2 grid is itself, in merge order.
    qwen3vl_tensor* pt = f32({4, 1}, {1, 2, 3, 4});
    qwen3vl_tensor* pe = f32({4, 1}, kNaN);
    ASSERT_EQ(qwen3vl_op_position_embedding(pe, pt, 2, 2, 2), QWEN3VL_STATUS_OK) << qwen3vl_last_error();
    EXPECT_EQ(read(pe), (std::vector<float>{1, 2, 3, 4}));
}

// ---- CUDA against the CPU ---------------------------------------------------------------------------------------

class CudaEmbeddingOps : public CudaOpsTest {
protected:
    // A table of a block format (Q8, Q4: the same raw planes on both backends) that stands for the weights deq:
    // lookups on CUDA give exactly those rows, as on the CPU; a bad id zeroes its row and is reported, as for dense
    // tables.
    void expect_block_table(const Pair& table, const std::vector<float>& deq, int64_t vocab, int64_t width,
                            const std::string& what) {
        const int64_t T = 23;
        std::vector<int32_t> ids(T);
        for (int32_t& id : ids) id = randint(0, int32_t(vocab) - 1);
        ids[0] = 0;
        ids[1] = int32_t(vocab) - 1;
        ids[2] = ids[3];
        Pair tid = ints({T}, ids), out = tensor(kF32, {T, width});
        both("embedding", [&](bool c) { return qwen3vl_op_embedding(on(out, c), on(table, c), on(tid, c)); });
        const std::vector<float> got = read(out.gpu);
        std::vector<float> want(size_t(T * width));
        for (int64_t t = 0; t < T; ++t)
            std::copy_n(deq.begin() + ids[size_t(t)] * width, width, want.begin() + t * width);
        size_t first = 0;  // bit for bit (EXPECT_EQ on floats would take -0 for 0)
        while (first < got.size() && std::memcmp(&got[first], &want[first], 4) == 0) ++first;
        EXPECT_EQ(first, got.size()) << what << ": element " << first << " (" << seed() << ")";
        expect_equal(out, what + " against the CPU");

        Pair bad = ints({2}, {3, int32_t(vocab)}), out2 = tensor(kF32, {2, width});
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_op_embedding(out2.gpu, table.gpu, bad.gpu)) << qwen3vl_last_error();
        std::vector<float> got2(size_t(2 * width), 1.0f);
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_tensor_read(out2.gpu, kF32, got2.data(), got2.size() * 4));
        EXPECT_NE(std::string(qwen3vl_last_error()).find("token id was outside the table"), std::string::npos)
            << qwen3vl_last_error();
        EXPECT_TRUE(std::equal(got2.begin(), got2.begin() + width, deq.begin() + 3 * width)) << "row of the good id";
        for (int64_t c = width; c < 2 * width; ++c) EXPECT_EQ(got2[size_t(c)], 0.0f) << "row of the bad id, column " << c;
    }
};

TEST_F(CudaEmbeddingOps, EmbeddingAndScatterRows) {
    for (qwen3vl_dtype tt : {kF32, kF16, kBF16}) {
        const int64_t vocab = 1000, width = 130, T = 17;
        Pair table = rand_tensor(tt, {vocab, width});
        std::vector<int32_t> ids(T);
        for (int32_t& id : ids) id = randint(0, vocab - 1);
        ids[0] = 0;
        ids[1] = vocab - 1;
        Pair tid = ints({T}, ids), out = tensor(kF32, {T, width});
        both("embedding", [&](bool c) { return qwen3vl_op_embedding(on(out, c), on(table, c), on(tid, c)); });
        expect_equal(out, std::string("embedding ") + dtype_name(tt));
    }
    {
        Pair table = rand_tensor(kBF16, {10, 8}), out = tensor(kF32, {2, 8});
        Pair bad = ints({2}, {3, 10});
        // Checked on the device: the op is queued, the bad row zeroed, and the next read reports the error once.
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_op_embedding(out.gpu, table.gpu, bad.gpu)) << qwen3vl_last_error();
        std::vector<float> got(16, 1.0f);
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
                  qwen3vl_tensor_read(out.gpu, kF32, got.data(), got.size() * sizeof(float)));
        EXPECT_NE(std::string(qwen3vl_last_error()).find("token id was outside the table"), std::string::npos)
            << qwen3vl_last_error();
        for (int c = 8; c < 16; ++c) EXPECT_EQ(got[size_t(c)], 0.0f) << "row of the bad id, column " << c - 8;
        EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(out.gpu, kF32, got.data(), got.size() * sizeof(float)))
            << "the error is reported once: " << qwen3vl_last_error();
    }
    const int64_t R = 50, W = 70, N = 13;
    std::vector<int32_t> perm(R);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng_.gen);
    Pair rows = ints({N}, std::vector<int32_t>(perm.begin(), perm.begin() + N));
    for (int accumulate : {0, 1}) {
        Pair x = rand_tensor(kF32, {R, W}), src = rand_tensor(kF32, {N, W});
        both("scatter_rows",
             [&](bool c) { return qwen3vl_op_scatter_rows(on(x, c), on(rows, c), on(src, c), accumulate); });
        expect_equal(x, "scatter_rows accumulate=" + std::to_string(accumulate));
    }
    // Bad rows are checked on the device (no host round trip, capturable): the op is queued and the next read
    // reports the error once; rows outside x are skipped, so nothing outside x is written.
    Pair x = rand_tensor(kF32, {R, W}), src = rand_tensor(kF32, {2, W});
    for (const std::vector<int32_t>& bad : {std::vector<int32_t>{4, 4}, std::vector<int32_t>{3, int32_t(R)},
                                            std::vector<int32_t>{-1, 2}}) {
        Pair rows_bad = ints({2}, bad);
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_op_scatter_rows(x.gpu, rows_bad.gpu, src.gpu, 1)) << qwen3vl_last_error();
        std::vector<float> got(size_t(R * W));
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
                  qwen3vl_tensor_read(x.gpu, kF32, got.data(), got.size() * sizeof(float)));
        EXPECT_NE(std::string(qwen3vl_last_error()).find("qwen3vl_op_scatter_rows"), std::string::npos)
            << qwen3vl_last_error();
        EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(x.gpu, kF32, got.data(), got.size() * sizeof(float)))
            << "the error is reported once: " << qwen3vl_last_error();
    }
}

// A Q8 table (the same raw planes on both backends: blocks of several magnitudes, f16-subnormal scales, zero
// blocks): each row is its weights d * q, exact in f32, as the host reference dequantizes them; a bad id zeroes its
// row and is reported, as for dense tables.
TEST_F(CudaEmbeddingOps, Q8Table) {
    const int64_t vocab = 1000, width = 160;
    std::vector<float> w(size_t(vocab * width));
    for (size_t b = 0; b < w.size() / 32; ++b) {
        const int kind = randint(0, 7);
        const float m = kind == 0 ? 0.0f : kind == 1 ? 3e-4f : kind == 2 ? 50.0f : 1.0f;
        for (size_t i = 0; i < 32; ++i) w[b * 32 + i] = m * rng_.uniform();
    }
    std::vector<int8_t> q(w.size());
    std::vector<uint16_t> d(w.size() / 32);
    quantize_q8(w.data(), int64_t(w.size()), q.data(), d.data());
    std::vector<float> deq(w.size());
    dequantize_q8(q.data(), d.data(), int64_t(w.size()), deq.data());
    std::vector<uint8_t> planes(q.size() + d.size() * 2);
    std::memcpy(planes.data(), q.data(), q.size());
    std::memcpy(planes.data() + q.size(), d.data(), d.size() * 2);
    Pair table{create(cpu_, QWEN3VL_DTYPE_Q8, {vocab, width}), create(gpu_, QWEN3VL_DTYPE_Q8, {vocab, width})};
    for (qwen3vl_tensor* t : {table.cpu, table.gpu})
        check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_Q8, planes.data(), planes.size()), "tensor_write q8");
    expect_block_table(table, deq, vocab, width, "embedding q8");
}

// A Q4 table (the same raw planes on both backends, quantized on the host from super-blocks of several magnitudes,
// f16-subnormal d and dmin among them, groups of one sign, zero super-blocks): each row is its weights exactly as
// the host reference dequantize_q4 gives them ((d sc) q - dmin mn, each operation rounded on its own), on CUDA as
// on the CPU; a bad id zeroes its row and is reported, as for dense tables.
TEST_F(CudaEmbeddingOps, Q4Table) {
    const int64_t vocab = 1000, width = 768;
    std::vector<float> w(size_t(vocab * width));
    for (size_t b = 0; b < w.size() / 256; ++b) {
        const int kind = randint(0, 7);
        const float m = kind == 0 ? 0.0f : kind == 1 ? 1e-3f : kind == 2 ? 50.0f : 1.0f;
        const float shift = kind == 3 ? 1.0f : 0.0f;  // groups of one sign: the min is not their zero
        for (size_t i = 0; i < 256; ++i) w[b * 256 + i] = m * (shift + rng_.uniform());
    }
    std::vector<uint8_t> planes(w.size() / 2 + w.size() / 256 * 16);
    quantize_q4(w.data(), int64_t(w.size()), planes.data(), planes.data() + w.size() / 2);
    std::vector<float> deq(w.size());
    dequantize_q4(planes.data(), planes.data() + w.size() / 2, int64_t(w.size()), deq.data());
    Pair table{create(cpu_, QWEN3VL_DTYPE_Q4, {vocab, width}), create(gpu_, QWEN3VL_DTYPE_Q4, {vocab, width})};
    for (qwen3vl_tensor* t : {table.cpu, table.gpu})
        check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_Q4, planes.data(), planes.size()), "tensor_write q4");
    expect_block_table(table, deq, vocab, width, "embedding q4");
}

TEST_F(CudaEmbeddingOps, PositionEmbedding) {
    struct Case {
        int64_t side, width, gh, gw, merge;
    };
    for (const Case& k : {Case{48, 64, 16, 24, 2}, Case{48, 1152, 2, 2, 2}, Case{7, 33, 6, 10, 1}, Case{1, 5, 3, 3, 3}})
        for (qwen3vl_dtype tt : {kF32, kBF16}) {
            Pair table = rand_tensor(tt, {k.side * k.side, k.width}), out = tensor(kF32, {k.gh * k.gw, k.width});
            both("position_embedding", [&](bool c) {
                return qwen3vl_op_position_embedding(on(out, c), on(table, c), k.gh, k.gw, k.merge);
            });
            expect_close(out, 1e-12, "position_embedding grid " + std::to_string(k.gh) + "x" + std::to_string(k.gw) +
                                         " of " + std::to_string(k.side) + " " + dtype_name(tt));
        }
}

}  // namespace
