// Graph capture through the C API (qwen3vl_backend_capture_begin / _end, qwen3vl_graph_launch) and the device-side
// argument checks it relies on: a decode-shaped step (embedding, QK-norm + M-RoPE + KV write, attention, argmax) whose
// n_past lives in a device tensor is recorded once and replayed for several positions; every replay must equal the
// same ops run eagerly with n_past passed as a number (up to fp32 summation order: with n_past on the device the
// attention launch is sized for the whole cache, so its key chunks differ: relative L2 1e-6), replays make no
// cudaMalloc, memory freed while recording stays reserved for the graph, and host copies are refused while recording.
// On the CPU backend capture is UNSUPPORTED and n_past_tensor is read on the host. SKIPs without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "op_calls.h"
#include "qwen3vl.h"

namespace op = qwen3vl::testing::op;

namespace {

class CudaGraphTest : public ::testing::Test {
protected:
    void SetUp() override {
        int32_t n = 0;
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_cuda_device_count(&n)) << qwen3vl_last_error();
        if (n == 0) GTEST_SKIP() << "SKIPPED: no CUDA device on this machine";
        qwen3vl_backend_params p = qwen3vl_backend_default_params();
        p.type = QWEN3VL_BACKEND_CUDA;
        ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_backend_create(&p, &gpu_)) << qwen3vl_last_error();
        seed_ = std::random_device{}();
        rng_.seed(seed_);
    }
    void TearDown() override {
        for (auto it = owned_.rbegin(); it != owned_.rend(); ++it) qwen3vl_tensor_free(*it);
        qwen3vl_backend_free(gpu_);
    }
    static void check(qwen3vl_status st, const std::string& what) {
        if (st != QWEN3VL_STATUS_OK)
            throw std::runtime_error(what + ": " + qwen3vl_status_name(st) + ": " + qwen3vl_last_error());
    }
    qwen3vl_tensor* make(qwen3vl_dtype dt, std::vector<int64_t> shape, bool own = true) {
        qwen3vl_tensor* t = nullptr;
        check(qwen3vl_tensor_create(gpu_, dt, int32_t(shape.size()), shape.data(), &t), "tensor_create");
        if (own) owned_.push_back(t);
        return t;
    }
    qwen3vl_tensor* random(std::vector<int64_t> shape, qwen3vl_dtype dt = QWEN3VL_DTYPE_F32) {
        size_t n = 1;
        for (int64_t d : shape) n *= size_t(d);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        std::vector<float> v(n);
        for (float& x : v) x = u(rng_);
        qwen3vl_tensor* t = make(dt, shape);
        check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4), "tensor_write");
        return t;
    }
    void write_i32(qwen3vl_tensor* t, const std::vector<int32_t>& v) {
        check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_I32, v.data(), v.size() * 4), "tensor_write");
    }
    static std::vector<float> read(const qwen3vl_tensor* t, size_t n) {
        std::vector<float> v(n);
        check(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_F32, v.data(), n * 4), "tensor_read");
        return v;
    }
    qwen3vl_memory_stats stats() const {
        qwen3vl_memory_stats s = qwen3vl_memory_stats_init();
        check(qwen3vl_backend_memory_stats(gpu_, &s), "memory_stats");
        return s;
    }

    qwen3vl_backend* gpu_ = nullptr;
    std::vector<qwen3vl_tensor*> owned_;
    unsigned seed_ = 0;
    std::mt19937 rng_;
};

// Text decode step at small shapes: Hq 4, Hkv 2, D 64, cache of 40 rows, vocab 50, hidden 32.
struct Step {
    static constexpr int64_t kVocab = 50, kHidden = 32, kHq = 4, kHkv = 2, kD = 64, kRows = 40;
    qwen3vl_tensor *table, *wq, *wk, *wv, *qn, *kn, *kc, *vc;  // weights and caches
    qwen3vl_tensor *ids, *pos, *npast, *out, *best;            // inputs and outputs of the step
};

TEST_F(CudaGraphTest, DecodeStepReplaysLikeEagerOps) {
    Step s{};
    s.table = random({Step::kVocab, Step::kHidden}, QWEN3VL_DTYPE_BF16);
    s.wq = random({Step::kHq * Step::kD, Step::kHidden}, QWEN3VL_DTYPE_BF16);
    s.wk = random({Step::kHkv * Step::kD, Step::kHidden}, QWEN3VL_DTYPE_BF16);
    s.wv = random({Step::kHkv * Step::kD, Step::kHidden}, QWEN3VL_DTYPE_BF16);
    s.qn = random({Step::kD});
    s.kn = random({Step::kD});
    s.kc = random({Step::kRows, Step::kHkv, Step::kD});
    s.vc = random({Step::kRows, Step::kHkv, Step::kD});
    qwen3vl_tensor* kc2 = make(QWEN3VL_DTYPE_F32, {Step::kRows, Step::kHkv, Step::kD});
    qwen3vl_tensor* vc2 = make(QWEN3VL_DTYPE_F32, {Step::kRows, Step::kHkv, Step::kD});
    {  // the eager run gets its own copy of the caches
        std::vector<float> k = read(s.kc, Step::kRows * Step::kHkv * Step::kD), v = read(s.vc, k.size());
        check(qwen3vl_tensor_write(kc2, QWEN3VL_DTYPE_F32, k.data(), k.size() * 4), "write");
        check(qwen3vl_tensor_write(vc2, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4), "write");
    }
    s.ids = make(QWEN3VL_DTYPE_I32, {1});
    s.pos = make(QWEN3VL_DTYPE_I32, {3, 1});
    s.npast = make(QWEN3VL_DTYPE_I32, {1});
    s.out = make(QWEN3VL_DTYPE_F32, {1, Step::kHq, Step::kD});
    s.best = make(QWEN3VL_DTYPE_I32, {1});
    const int64_t section[3] = {12, 10, 10};

    // The step; temporaries are created and freed inside, as the C# layers do. n_past < 0: read from s.npast.
    auto step = [&](qwen3vl_tensor* kc, qwen3vl_tensor* vc, int64_t n_past) {
        const bool dev = n_past < 0;
        qwen3vl_tensor* x = make(QWEN3VL_DTYPE_F32, {1, Step::kHidden}, false);
        qwen3vl_tensor* q = make(QWEN3VL_DTYPE_F32, {1, Step::kHq, Step::kD}, false);
        qwen3vl_tensor* k = make(QWEN3VL_DTYPE_F32, {1, Step::kHkv, Step::kD}, false);
        qwen3vl_tensor* v = make(QWEN3VL_DTYPE_F32, {1, Step::kHkv, Step::kD}, false);
        qwen3vl_tensor *q2 = nullptr, *k2 = nullptr, *v2 = nullptr;  // [1, H * D] views for the projections
        const int64_t qs[2] = {1, Step::kHq * Step::kD}, ks[2] = {1, Step::kHkv * Step::kD};
        check(qwen3vl_tensor_view(q, 0, 2, qs, &q2), "view");
        check(qwen3vl_tensor_view(k, 0, 2, ks, &k2), "view");
        check(qwen3vl_tensor_view(v, 0, 2, ks, &v2), "view");
        check(qwen3vl_op_embedding(x, s.table, s.ids), "embedding");
        check(qwen3vl_op_linear(q2, x, s.wq, nullptr), "q");
        check(qwen3vl_op_linear(k2, x, s.wk, nullptr), "k");
        check(qwen3vl_op_linear(v2, x, s.wv, nullptr), "v");
        for (qwen3vl_tensor* t : {q2, k2, v2}) qwen3vl_tensor_free(t);
        check(op::qk_norm_rope_kv(q, k, v, s.qn, s.kn, 1e-6f, s.pos, 5e6f, section, kc, vc, dev ? 0 : n_past,
                                         dev ? s.npast : nullptr),
              "qk_norm_rope_kv");
        check(op::attention(s.out, q, kc, vc, dev ? 0 : n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr,
                                   dev ? s.npast : nullptr),
              "attention");
        qwen3vl_tensor* flat = nullptr;
        const int64_t shape[2] = {1, Step::kHq * Step::kD};
        check(qwen3vl_tensor_view(s.out, 0, 2, shape, &flat), "view");
        check(qwen3vl_op_argmax(s.best, flat), "argmax");
        for (qwen3vl_tensor* t : {flat, v, k, q, x}) qwen3vl_tensor_free(t);
    };

    check(qwen3vl_backend_capture_begin(gpu_), "capture_begin");
    {
        // Host copies are refused on the capturing thread (and do not break the capture).
        int32_t one = 1;
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_tensor_write(s.ids, QWEN3VL_DTYPE_I32, &one, 4));
        EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_tensor_read(s.ids, QWEN3VL_DTYPE_I32, &one, 4));
    }
    try {
        step(s.kc, s.vc, -1);
    } catch (...) {
        qwen3vl_backend_capture_discard(gpu_);
        throw;
    }
    qwen3vl_graph* graph = nullptr;
    check(qwen3vl_backend_capture_end(gpu_, &graph), "capture_end");

    // Memory freed while recording stays with the graph: a same-sized tensor made now gets other memory, and the
    // graph's replays do not disturb what is written there.
    qwen3vl_tensor* probe = random({1, Step::kHq, Step::kD});
    const std::vector<float> probe_before = read(probe, Step::kHq * Step::kD);

    std::uniform_int_distribution<int32_t> token(0, int32_t(Step::kVocab) - 1);
    for (int32_t n_past : {0, 1, 7, 20, 39}) {
        const int32_t id = token(rng_), p = n_past + 3;
        write_i32(s.ids, {id});
        write_i32(s.pos, {p, p, p});
        write_i32(s.npast, {n_past});
        check(qwen3vl_graph_launch(graph), "graph_launch");
        const std::vector<float> got = read(s.out, Step::kHq * Step::kD);
        int32_t got_best = -1;
        check(qwen3vl_tensor_read(s.best, QWEN3VL_DTYPE_I32, &got_best, 4), "read best");

        step(kc2, vc2, n_past);  // eager, same inputs (still in s.ids / s.pos)
        const std::vector<float> want = read(s.out, Step::kHq * Step::kD);
        int32_t want_best = -2;
        check(qwen3vl_tensor_read(s.best, QWEN3VL_DTYPE_I32, &want_best, 4), "read best");
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < got.size(); ++i) {
            num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
            den += double(want[i]) * want[i];
        }
        EXPECT_LE(std::sqrt(num / den), 1e-6) << "n_past " << n_past << " (seed " << seed_ << ")";
        EXPECT_EQ(got_best, int32_t(std::max_element(got.begin(), got.end()) - got.begin())) << "n_past " << n_past;
        (void)want_best;
    }
    // The caches were advanced the same way by the replays and the eager steps.
    EXPECT_EQ(read(s.kc, Step::kRows * Step::kHkv * Step::kD), read(kc2, Step::kRows * Step::kHkv * Step::kD));
    EXPECT_EQ(read(s.vc, Step::kRows * Step::kHkv * Step::kD), read(vc2, Step::kRows * Step::kHkv * Step::kD));
    EXPECT_EQ(read(probe, Step::kHq * Step::kD), probe_before) << "a replay wrote memory handed out after capture";

    // Steady state: replays allocate nothing (the eager steps above reuse the pool's cached blocks).
    const uint64_t before = stats().system_allocations;
    for (int i = 0; i < 20; ++i) {
        write_i32(s.npast, {5});
        check(qwen3vl_graph_launch(graph), "graph_launch");
    }
    (void)read(s.out, 1 * Step::kHq * Step::kD);
    EXPECT_EQ(stats().system_allocations, before);

    // n_past outside the cache: no row written, the next read reports it once.
    write_i32(s.npast, {int32_t(Step::kRows)});
    check(qwen3vl_graph_launch(graph), "graph_launch");
    std::vector<float> sink(Step::kHq * Step::kD);
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_tensor_read(s.out, QWEN3VL_DTYPE_F32, sink.data(), sink.size() * 4));
    EXPECT_NE(std::string(qwen3vl_last_error()).find("n_past read from n_past_tensor"), std::string::npos)
        << qwen3vl_last_error();
    EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_read(s.out, QWEN3VL_DTYPE_F32, sink.data(), sink.size() * 4));

    qwen3vl_graph_free(graph);
}

// top_k of a decoding step's logits recorded once (its part keys in scratch held by the graph) and replayed on new
// logits: each replay equals the eager op, and replays allocate nothing.
TEST_F(CudaGraphTest, TopKReplaysLikeTheEagerOp) {
    const int64_t vocab = 151936, k = 32;
    qwen3vl_tensor* logits = random({1, vocab});
    qwen3vl_tensor* values = make(QWEN3VL_DTYPE_F32, {1, k});
    qwen3vl_tensor* ids = make(QWEN3VL_DTYPE_I32, {1, k});
    qwen3vl_tensor* eager_values = make(QWEN3VL_DTYPE_F32, {1, k});
    qwen3vl_tensor* eager_ids = make(QWEN3VL_DTYPE_I32, {1, k});
    check(qwen3vl_backend_capture_begin(gpu_), "capture_begin");
    check(qwen3vl_op_top_k(values, ids, logits, k), "top_k");
    qwen3vl_graph* graph = nullptr;
    check(qwen3vl_backend_capture_end(gpu_, &graph), "capture_end");
    const auto read_i32 = [](const qwen3vl_tensor* t) {
        std::vector<int32_t> v(k);
        check(qwen3vl_tensor_read(t, QWEN3VL_DTYPE_I32, v.data(), v.size() * 4), "tensor_read");
        return v;
    };
    std::uniform_real_distribution<float> u(-10.0f, 10.0f);
    std::vector<float> l(static_cast<size_t>(vocab));
    for (int step = 0; step < 4; ++step) {
        for (float& x : l) x = u(rng_);
        check(qwen3vl_tensor_write(logits, QWEN3VL_DTYPE_F32, l.data(), l.size() * 4), "tensor_write");
        check(qwen3vl_graph_launch(graph), "graph_launch");
        check(qwen3vl_op_top_k(eager_values, eager_ids, logits, k), "top_k");
        const std::vector<int32_t> got = read_i32(ids);
        EXPECT_EQ(got, read_i32(eager_ids)) << "step " << step << " (seed " << seed_ << ")";
        EXPECT_EQ(read(values, k), read(eager_values, k)) << "step " << step;
        EXPECT_EQ(got[0], int32_t(std::max_element(l.begin(), l.end()) - l.begin())) << "step " << step;
    }
    const uint64_t before = stats().system_allocations;
    for (int i = 0; i < 20; ++i) check(qwen3vl_graph_launch(graph), "graph_launch");
    (void)read(values, k);
    EXPECT_EQ(stats().system_allocations, before);
    qwen3vl_graph_free(graph);
}

TEST_F(CudaGraphTest, DiscardAndMisuse) {
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_backend_capture_discard(gpu_)) << "nothing to discard";
    qwen3vl_tensor* a = random({64});
    const qwen3vl_memory_stats before = stats();
    check(qwen3vl_backend_capture_begin(gpu_), "capture_begin");
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_backend_capture_begin(gpu_)) << "one capture per thread";
    qwen3vl_tensor* t = make(QWEN3VL_DTYPE_F32, {64}, false);
    check(qwen3vl_op_add(t, a, a), "add");
    qwen3vl_tensor_free(t);
    check(qwen3vl_backend_capture_discard(gpu_), "discard");
    // Discarded: the memory of t is free again.
    EXPECT_EQ(stats().bytes_in_use, before.bytes_in_use) << "the discarded capture's memory is free again";
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT, qwen3vl_graph_launch(nullptr));
    qwen3vl_graph_free(nullptr);
}

TEST(CpuGraph, CaptureIsUnsupportedAndNPastTensorIsReadOnTheHost) {
    qwen3vl_backend* cpu = nullptr;
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    ASSERT_EQ(QWEN3VL_STATUS_OK, qwen3vl_backend_create(&p, &cpu));
    EXPECT_EQ(QWEN3VL_STATUS_UNSUPPORTED, qwen3vl_backend_capture_begin(cpu));
    EXPECT_EQ(QWEN3VL_STATUS_UNSUPPORTED, qwen3vl_backend_capture_discard(cpu));
    // n_past_tensor on the CPU: read and checked on the host when the op is called.
    auto make = [&](qwen3vl_dtype dt, std::vector<int64_t> shape, std::vector<float> v) {
        qwen3vl_tensor* t = nullptr;
        EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_create(cpu, dt, int32_t(shape.size()), shape.data(), &t));
        if (dt == QWEN3VL_DTYPE_I32) {
            std::vector<int32_t> i(v.begin(), v.end());
            EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_write(t, dt, i.data(), i.size() * 4));
        } else {
            EXPECT_EQ(QWEN3VL_STATUS_OK, qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, v.data(), v.size() * 4));
        }
        return t;
    };
    const int64_t D = 8;
    std::vector<float> ones(64, 0.5f);
    qwen3vl_tensor* q = make(QWEN3VL_DTYPE_F32, {1, 2, D}, std::vector<float>(ones.begin(), ones.begin() + 16));
    qwen3vl_tensor* kc = make(QWEN3VL_DTYPE_F32, {4, 1, D}, std::vector<float>(ones.begin(), ones.begin() + 32));
    qwen3vl_tensor* vc = make(QWEN3VL_DTYPE_F32, {4, 1, D}, std::vector<float>(ones.begin(), ones.begin() + 32));
    qwen3vl_tensor* out = make(QWEN3VL_DTYPE_F32, {1, 2, D}, std::vector<float>(16, 0.0f));
    qwen3vl_tensor* np_ok = make(QWEN3VL_DTYPE_I32, {1}, {3});
    qwen3vl_tensor* np_bad = make(QWEN3VL_DTYPE_I32, {1}, {4});
    EXPECT_EQ(QWEN3VL_STATUS_OK, op::attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np_ok))
        << qwen3vl_last_error();
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
              op::attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np_bad));
    EXPECT_NE(std::string(qwen3vl_last_error()).find("n_past_tensor holds 4"), std::string::npos) << qwen3vl_last_error();
    // n_past_bound bounds the tensor's value (0: the whole cache).
    EXPECT_EQ(QWEN3VL_STATUS_OK, op::attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np_ok, 3));
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
              op::attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np_ok, 2));
    EXPECT_NE(std::string(qwen3vl_last_error()).find("outside 0 .. 2"), std::string::npos) << qwen3vl_last_error();
    EXPECT_EQ(QWEN3VL_STATUS_INVALID_ARGUMENT,
              op::attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np_ok, 4));
    EXPECT_NE(std::string(qwen3vl_last_error()).find("exceed the cache"), std::string::npos) << qwen3vl_last_error();
    for (qwen3vl_tensor* t : {np_bad, np_ok, out, vc, kc, q}) qwen3vl_tensor_free(t);
    qwen3vl_backend_free(cpu);
}

}  // namespace
