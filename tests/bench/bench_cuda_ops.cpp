// Timings of the CUDA ops through the C API at Qwen3-VL-2B shapes (random data), one function per op family, each
// line next to the device's ceilings measured at start (bench_ceilings_cuda.cpp: device copy bandwidth and a cuBLASLt
// bf16 GEMM, neither using the engine). Eager time per call is averaged over a loop closed by a tensor read (the C
// API's synchronisation point), so it includes the host side of each call (argument checks, launches, cuBLASLt
// heuristics); the linear ops are also replayed from a captured graph (GPU time only, as in a captured decode step).
// Memory-bound ops print GB/s of the bytes they must read (weights or the KV cache) and its share of the copy
// bandwidth, GEMMs TFLOP/s and its share of the GEMM ceiling.
// Usage: qwen3vl_bench_cuda [iterations] [family ...]   families: linear fused q8 q4 select attention decode vision
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "../native/op_calls.h"
#include "bench_ceilings_cuda.h"
#include "qwen3vl.h"

namespace {

using namespace qwen3vl::testing::op;

qwen3vl_backend* g_be = nullptr;
qwen3vl::bench::CudaCeilings g_ceilings;

// Shares of the measured ceilings, as text ("n/a" without them).
std::string of_copy(double gbs) {
    char b[32] = "  n/a of copy";
    if (g_ceilings.ok) std::snprintf(b, sizeof b, "%5.1f%% of copy", 100.0 * gbs / g_ceilings.copy_gbs);
    return b;
}
std::string of_gemm(double tflops) {
    char b[32] = "  n/a of GEMM";
    if (g_ceilings.ok) std::snprintf(b, sizeof b, "%5.1f%% of GEMM", 100.0 * tflops / g_ceilings.gemm_tflops);
    return b;
}
std::vector<qwen3vl_tensor*> g_tensors;

void check(qwen3vl_status st, const char* what) {
    if (st == QWEN3VL_STATUS_OK) return;
    std::fprintf(stderr, "%s: %s: %s\n", what, qwen3vl_status_name(st), qwen3vl_last_error());
    std::exit(1);
}

qwen3vl_tensor* tensor(qwen3vl_dtype dt, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    std::vector<float> v(n);
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& x : v) x = u(rng);
    qwen3vl_tensor* t = nullptr;
    check(qwen3vl_tensor_create(g_be, dt, int32_t(shape.size()), shape.data(), &t), "tensor_create");
    check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, v.data(), n * 4), "tensor_write");
    g_tensors.push_back(t);
    return t;
}

// Seconds per call of op; sync reads one small tensor.
double time_op(int iters, qwen3vl_tensor* sync, const std::function<qwen3vl_status()>& op) {
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    check(qwen3vl_tensor_describe(sync, &d), "describe");
    std::vector<float> host(size_t(d.bytes / 4));
    for (int i = 0; i < 3; ++i) check(op(), "warm-up");
    check(qwen3vl_tensor_read(sync, QWEN3VL_DTYPE_F32, host.data(), host.size() * 4), "read");
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) check(op(), "op");
    check(qwen3vl_tensor_read(sync, QWEN3VL_DTYPE_F32, host.data(), host.size() * 4), "read");
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

// Frees the tensors created after the first `keep` (the weight copies of one linear case).
void release_after(size_t keep) {
    while (g_tensors.size() > keep) {
        qwen3vl_tensor_free(g_tensors.back());
        g_tensors.pop_back();
    }
}

// Seconds per call of op(c) for c = 0 .. calls-1 recorded once into a graph and replayed: the GPU time of the
// kernels and the gaps between them, without the host side of the calls (what a captured decode step sees).
// Negative when the backend cannot capture.
double time_graph(int iters, int calls, qwen3vl_tensor* sync, const std::function<qwen3vl_status(int)>& op) {
    qwen3vl_tensor_desc d = qwen3vl_tensor_desc_init();
    check(qwen3vl_tensor_describe(sync, &d), "describe");
    std::vector<float> host(size_t(d.bytes / 4));
    if (qwen3vl_backend_capture_begin(g_be) != QWEN3VL_STATUS_OK) return -1.0;
    for (int c = 0; c < calls; ++c)
        if (op(c) != QWEN3VL_STATUS_OK) {
            qwen3vl_backend_capture_discard(g_be);
            return -1.0;
        }
    qwen3vl_graph* graph = nullptr;
    if (qwen3vl_backend_capture_end(g_be, &graph) != QWEN3VL_STATUS_OK) return -1.0;
    check(qwen3vl_graph_launch(graph), "graph_launch");
    check(qwen3vl_tensor_read(sync, QWEN3VL_DTYPE_F32, host.data(), host.size() * 4), "read");
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) check(qwen3vl_graph_launch(graph), "graph_launch");
    check(qwen3vl_tensor_read(sync, QWEN3VL_DTYPE_F32, host.data(), host.size() * 4), "read");
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double s = total / (double(iters) * calls);
    qwen3vl_graph_free(graph);
    return s;
}

// Weight copies for a linear case: enough that one round of calls streams >= 128 MB, so the weights come from HBM as
// in decode (one 8 MB matrix called back to back would stay in the 50 MB L2).
int weight_copies(double weight_bytes) {
    const double copies = std::ceil(128.0 * (1 << 20) / weight_bytes);
    return copies < 1.0 ? 1 : copies > 16.0 ? 16 : int(copies);
}

// One linear case: eager time per call (host side included) and graph time per call, GB/s of weights and TFLOP/s
// from the graph time when there is one. op(c) uses weight copy c % copies.
void report_linear(const char* what, int64_t M, int64_t K, int64_t N, double weight_bytes, double flops, int iters,
                   int copies, qwen3vl_tensor* sync, const std::function<qwen3vl_status(int)>& op) {
    int next = 0;
    const double eager = time_op(iters, sync, [&] { return op(next++ % copies); });
    const int calls = copies < 4 ? 4 : copies;
    const double graph = time_graph(iters, calls, sync, [&](int c) { return op(c % copies); });
    const double s = graph > 0.0 ? graph : eager;
    char graph_text[32] = "      n/a";
    if (graph > 0.0) std::snprintf(graph_text, sizeof graph_text, "%9.1f", graph * 1e6);
    const double gbs = weight_bytes / s / 1e9, tflops = flops / s / 1e12;
    std::printf("%-36s M=%-5lld K=%-5lld N=%-6lld %9.1f us eager %s us graph %7.0f GB/s weights (%s) %7.1f TFLOP/s (%s)\n",
                what, (long long)M, (long long)K, (long long)N, eager * 1e6, graph_text, gbs, of_copy(gbs).c_str(),
                tflops, of_gemm(tflops).c_str());
}

// ---- The vision encoder (Qwen3-VL-2B: hidden 1024, 16 heads of 64, intermediate 4096, 24 blocks) on one 1024x1024
// image: T = 4096 patches of 1536 values, merged 4:1 into 1024 tokens of 2048. bf16 weights and biases. Each fused
// op next to the unfused sequence it replaces; the MLP in three forms (unfused; f32 intermediate: layer_norm +
// linear_gelu + linear_residual; mlp_gelu with its bf16 intermediate); one whole block both ways; the 25 MB pixel
// upload.

qwen3vl_tensor* i32_tensor(std::vector<int64_t> shape, const std::vector<int32_t>& values) {
    qwen3vl_tensor* t = nullptr;
    check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, int32_t(shape.size()), shape.data(), &t), "tensor_create");
    check(qwen3vl_tensor_write(t, QWEN3VL_DTYPE_I32, values.data(), values.size() * 4), "tensor_write");
    g_tensors.push_back(t);
    return t;
}

// Runs the ops in order, stopping at the first failure.
qwen3vl_status run_all(std::initializer_list<std::function<qwen3vl_status()>> ops) {
    for (const auto& op : ops) {
        const qwen3vl_status st = op();
        if (st != QWEN3VL_STATUS_OK) return st;
    }
    return QWEN3VL_STATUS_OK;
}

void bench_vision(int iters) {
    [[maybe_unused]] const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32;
    const int64_t T = 4096, C = 1024, H = 16, D = 64, I = 4096, P = 1536, merged = 4 * C, out_hidden = 2048;
    const float eps = 1e-6f, theta = 10000.0f;
    const size_t keep = g_tensors.size();
    qwen3vl_tensor* sync = tensor(f32, {1});  // a read of it waits for the queued work (and copies 4 bytes)
    qwen3vl_tensor* x = tensor(f32, {T, C});
    qwen3vl_tensor* h = tensor(f32, {T, C});
    qwen3vl_tensor* nw = tensor(bf16, {C});
    qwen3vl_tensor* nb = tensor(bf16, {C});
    qwen3vl_tensor* wqkv = tensor(bf16, {3 * C, C});
    qwen3vl_tensor* bqkv = tensor(bf16, {3 * C});
    qwen3vl_tensor* qkv = tensor(f32, {T, 3 * C});
    qwen3vl_tensor* wproj = tensor(bf16, {C, C});
    qwen3vl_tensor* bproj = tensor(bf16, {C});
    qwen3vl_tensor* attn = tensor(f32, {T, C});
    qwen3vl_tensor* w1 = tensor(bf16, {I, C});
    qwen3vl_tensor* b1 = tensor(bf16, {I});
    qwen3vl_tensor* w2 = tensor(bf16, {C, I});
    qwen3vl_tensor* b2 = tensor(bf16, {C});
    qwen3vl_tensor* f = tensor(f32, {T, I});
    const double w_qkv = 3.0 * C * C * 2, w_proj = double(C) * C * 2, w_mlp = 2.0 * I * C * 2;
    const double fl_qkv = 2.0 * T * C * 3 * C, fl_proj = 2.0 * T * C * C, fl_mlp = 4.0 * T * C * I;

    report_linear("vision layer_norm_linear norm1+qkv", T, C, 3 * C, w_qkv, fl_qkv, iters, 1, sync, [&](int) {
        return layer_norm_linear(qkv, x, nw, nb, eps, wqkv, bqkv);
    });
    report_linear("  unfused: layer_norm + linear", T, C, 3 * C, w_qkv, fl_qkv, iters, 1, sync, [&](int) {
        return run_all({[&] { return qwen3vl_op_layer_norm(h, x, nw, nb, eps); },
                        [&] { return qwen3vl_op_linear(qkv, h, wqkv, bqkv); }});
    });
    report_linear("vision linear_residual proj+bias", T, C, C, w_proj, fl_proj, iters, 1, sync,
                  [&](int) { return qwen3vl_op_linear_residual(x, attn, wproj, bproj, x); });
    report_linear("  unfused: linear + add", T, C, C, w_proj, fl_proj, iters, 1, sync, [&](int) {
        return run_all({[&] { return qwen3vl_op_linear(h, attn, wproj, bproj); },
                        [&] { return qwen3vl_op_add(x, x, h); }});
    });
    report_linear("vision linear_gelu fc1 (tanh)", T, C, I, w_mlp / 2, fl_mlp / 2, iters, 1, sync,
                  [&](int) { return qwen3vl_op_linear_gelu(f, h, w1, b1, 1); });
    report_linear("  unfused: linear + gelu", T, C, I, w_mlp / 2, fl_mlp / 2, iters, 1, sync, [&](int) {
        return run_all({[&] { return qwen3vl_op_linear(f, h, w1, b1); }, [&] { return qwen3vl_op_gelu(f, f, 1); }});
    });
    report_linear("vision mlp_gelu norm2+MLP+residual", T, C, I, w_mlp, fl_mlp, iters, 1, sync, [&](int) {
        return mlp_gelu(x, x, nw, nb, eps, w1, b1, 1, w2, b2, x);
    });
    report_linear("  f32 intermediate: ln+linear_gelu+lin_res", T, C, I, w_mlp, fl_mlp, iters, 1, sync, [&](int) {
        return run_all({[&] { return qwen3vl_op_layer_norm(h, x, nw, nb, eps); },
                        [&] { return qwen3vl_op_linear_gelu(f, h, w1, b1, 1); },
                        [&] { return qwen3vl_op_linear_residual(x, f, w2, b2, x); }});
    });
    report_linear("  unfused: ln+linear+gelu+linear+add", T, C, I, w_mlp, fl_mlp, iters, 1, sync, [&](int) {
        return run_all({[&] { return qwen3vl_op_layer_norm(h, x, nw, nb, eps); },
                        [&] { return qwen3vl_op_linear(f, h, w1, b1); }, [&] { return qwen3vl_op_gelu(f, f, 1); },
                        [&] { return qwen3vl_op_linear(h, f, w2, b2); }, [&] { return qwen3vl_op_add(x, x, h); }});
    });

    // One block, as VisionBlock.Forward runs it now and as it ran before the fused ops.
    std::vector<int32_t> pos(size_t(T * 2)), seg_values = {0, int32_t(T)};
    for (int64_t t = 0; t < T; ++t) {
        pos[size_t(2 * t)] = int32_t(t / 64);
        pos[size_t(2 * t + 1)] = int32_t(t % 64);
    }
    qwen3vl_tensor* positions = i32_tensor({T, 2}, pos);
    qwen3vl_tensor* segments = i32_tensor({2}, seg_values);
    qwen3vl_tensor *qkv4 = nullptr, *attn3 = nullptr;
    const int64_t s_qkv4[4] = {T, 3, H, D}, s_attn3[3] = {T, H, D};
    check(qwen3vl_tensor_view(qkv, 0, 4, s_qkv4, &qkv4), "tensor_view");
    g_tensors.push_back(qkv4);
    check(qwen3vl_tensor_view(attn, 0, 3, s_attn3, &attn3), "tensor_view");
    g_tensors.push_back(attn3);
    auto vision_attention = [&] {
        return run_all({[&] { return qwen3vl_op_rope_vision(qkv4, positions, theta); },
                        [&] {
                            return attention(attn3, qkv4, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, segments);
                        }});
    };
    const double fused_block = time_op(iters, sync, [&] {
        return run_all({[&] { return layer_norm_linear(qkv, x, nw, nb, eps, wqkv, bqkv); }, vision_attention,
                        [&] { return qwen3vl_op_linear_residual(x, attn, wproj, bproj, x); },
                        [&] { return mlp_gelu(x, x, nw, nb, eps, w1, b1, 1, w2, b2, x); }});
    });
    const double unfused_block = time_op(iters, sync, [&] {
        return run_all({[&] { return qwen3vl_op_layer_norm(h, x, nw, nb, eps); },
                        [&] { return qwen3vl_op_linear(qkv, h, wqkv, bqkv); }, vision_attention,
                        [&] { return qwen3vl_op_linear(h, attn, wproj, bproj); },
                        [&] { return qwen3vl_op_add(x, x, h); },
                        [&] { return qwen3vl_op_layer_norm(h, x, nw, nb, eps); },
                        [&] { return qwen3vl_op_linear(f, h, w1, b1); }, [&] { return qwen3vl_op_gelu(f, f, 1); },
                        [&] { return qwen3vl_op_linear(h, f, w2, b2); }, [&] { return qwen3vl_op_add(x, x, h); }});
    });
    std::printf("%-36s T=%-5lld %9.1f us fused  %9.1f us unfused  (x 24 blocks: %6.2f ms / %6.2f ms)\n",
                "vision block", (long long)T, fused_block * 1e6, unfused_block * 1e6, fused_block * 24e3,
                unfused_block * 24e3);

    // Patch embedding with the position embedding as its residual; a DeepStack merger (LayerNorm over 4 x 1024,
    // erf GELU).
    qwen3vl_tensor* pixels = tensor(f32, {T, P});
    qwen3vl_tensor* wpatch = tensor(bf16, {C, P});
    qwen3vl_tensor* bpatch = tensor(bf16, {C});
    report_linear("vision patch embed linear_residual", T, P, C, double(C) * P * 2, 2.0 * T * P * C, iters, 1, sync,
                  [&](int) { return qwen3vl_op_linear_residual(h, pixels, wpatch, bpatch, x); });
    report_linear("  unfused: linear + add", T, P, C, double(C) * P * 2, 2.0 * T * P * C, iters, 1, sync, [&](int) {
        return run_all({[&] { return qwen3vl_op_linear(h, pixels, wpatch, bpatch); },
                        [&] { return qwen3vl_op_add(h, h, x); }});
    });
    const int64_t m = T / 4;
    qwen3vl_tensor *shuffled = nullptr, *mh = nullptr;
    const int64_t s_shuffled[2] = {m, merged};
    check(qwen3vl_tensor_view(x, 0, 2, s_shuffled, &shuffled), "tensor_view");
    g_tensors.push_back(shuffled);
    check(qwen3vl_tensor_view(f, 0, 2, s_shuffled, &mh), "tensor_view");
    g_tensors.push_back(mh);
    qwen3vl_tensor* mnw = tensor(bf16, {merged});
    qwen3vl_tensor* mnb = tensor(bf16, {merged});
    qwen3vl_tensor* m1 = tensor(bf16, {merged, merged});
    qwen3vl_tensor* mb1 = tensor(bf16, {merged});
    qwen3vl_tensor* m2 = tensor(bf16, {out_hidden, merged});
    qwen3vl_tensor* mb2 = tensor(bf16, {out_hidden});
    qwen3vl_tensor* mn = tensor(f32, {m, merged});
    qwen3vl_tensor* features = tensor(f32, {m, out_hidden});
    const double w_merger = (double(merged) * merged + double(out_hidden) * merged) * 2;
    const double fl_merger = 2.0 * m * merged * (merged + out_hidden);
    report_linear("vision mlp_gelu DeepStack merger", m, merged, merged, w_merger, fl_merger, iters, 1, sync, [&](int) {
        return mlp_gelu(features, shuffled, mnw, mnb, eps, m1, mb1, 0, m2, mb2, nullptr);
    });
    report_linear("  unfused: ln+linear+gelu+linear", m, merged, merged, w_merger, fl_merger, iters, 1, sync, [&](int) {
        return run_all({[&] { return qwen3vl_op_layer_norm(mn, shuffled, mnw, mnb, eps); },
                        [&] { return qwen3vl_op_linear(mh, mn, m1, mb1); }, [&] { return qwen3vl_op_gelu(mh, mh, 0); },
                        [&] { return qwen3vl_op_linear(features, mh, m2, mb2); }});
    });

    // The pixel upload: time per tensor_write of the 25 MB (including the copy's completion, amortised over the
    // loop) and the time until one write returns to the caller.
    std::vector<float> host(size_t(T * P), 0.5f);
    const size_t bytes = host.size() * 4;
    const double per_write =
        time_op(iters, sync, [&] { return qwen3vl_tensor_write(pixels, f32, host.data(), bytes); });
    double returns = 1e9;
    for (int i = 0; i < 5; ++i) {
        float one = 0.0f;
        check(qwen3vl_tensor_read(sync, f32, &one, sizeof one), "read");  // an idle device
        const auto t0 = std::chrono::steady_clock::now();
        check(qwen3vl_tensor_write(pixels, f32, host.data(), bytes), "tensor_write");
        returns = std::min(returns, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("%-36s %6.1f MB %9.1f us per write (%5.1f GB/s)  %9.1f us until the call returns\n",
                "vision pixel upload (pageable f32)", bytes / 1e6, per_write * 1e6, bytes / per_write / 1e9,
                returns * 1e6);
    release_after(keep);
}

// Linear family, plain ops (bf16 weights): decode GEMV shapes and prefill GEMMs.
void bench_linear(int iters) {
    [[maybe_unused]] const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32;
    // Linear ops (bf16 weights): the plain ones, then the fused forms of a decoder layer (norm + q/k/v in one launch,
    // norm + gate/up swiglu, o_proj / down_proj + residual, final norm + lm_head).
    struct Lin {
        const char* what;
        int64_t M, K, N;
        bool swiglu;
    };
    for (Lin l : {Lin{"linear q_proj decode", 1, 2048, 2048, false}, Lin{"linear_swiglu gate/up decode", 1, 2048, 6144, true},
                  Lin{"linear down_proj decode", 1, 6144, 2048, false}, Lin{"linear lm_head decode", 1, 2048, 151936, false},
                  Lin{"linear M=8 gate decode batch", 8, 2048, 6144, false},
                  Lin{"linear_swiglu prefill 512", 512, 2048, 6144, true}, Lin{"linear prefill 512", 512, 2048, 6144, false},
                  Lin{"linear prefill 4096", 4096, 2048, 6144, false}}) {
        const size_t keep = g_tensors.size();
        const double weight_bytes = double(l.N) * l.K * 2 * (l.swiglu ? 2 : 1);
        const double flops = 2.0 * l.M * l.N * l.K * (l.swiglu ? 2 : 1);
        const int copies = l.M <= 8 ? weight_copies(weight_bytes) : 1;
        qwen3vl_tensor* x = tensor(f32, {l.M, l.K});
        qwen3vl_tensor* out = tensor(f32, {l.M, l.N});
        std::vector<qwen3vl_tensor*> w, u;
        for (int c = 0; c < copies; ++c) {
            w.push_back(tensor(bf16, {l.N, l.K}));
            u.push_back(l.swiglu ? tensor(bf16, {l.N, l.K}) : nullptr);
        }
        report_linear(l.what, l.M, l.K, l.N, weight_bytes, flops, iters, copies, x, [&](int c) {
            return l.swiglu ? qwen3vl_op_linear_swiglu(out, x, w[size_t(c)], u[size_t(c)])
                            : qwen3vl_op_linear(out, x, w[size_t(c)], nullptr);
        });
        release_after(keep);
    }
}

// Linear family, the decoder layer's fused forms (norm + q/k/v in one launch, norm + gate/up swiglu, o_proj /
// down_proj + residual, final norm + lm_head), each next to the unfused sequence it replaces.
void bench_fused_linear(int iters) {
    [[maybe_unused]] const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32;
    enum class Fused { NormQkv, NormSwiglu, Residual, NormLmHead };
    struct FusedCase {
        const char* what;
        Fused kind;
        int64_t M, K, N;  // N: output rows (q/k/v: all three together)
    };
    for (FusedCase f : {FusedCase{"norm_linear q/k/v decode", Fused::NormQkv, 1, 2048, 4096},
                        FusedCase{"norm_linear_swiglu gate/up decode", Fused::NormSwiglu, 1, 2048, 6144},
                        FusedCase{"linear_residual o_proj decode", Fused::Residual, 1, 2048, 2048},
                        FusedCase{"linear_residual down_proj decode", Fused::Residual, 1, 6144, 2048},
                        FusedCase{"norm_linear lm_head decode", Fused::NormLmHead, 1, 2048, 151936},
                        FusedCase{"norm_linear q/k/v M=8", Fused::NormQkv, 8, 2048, 4096},
                        FusedCase{"norm_linear_swiglu gate/up M=8", Fused::NormSwiglu, 8, 2048, 6144},
                        FusedCase{"linear_residual down_proj M=8", Fused::Residual, 8, 6144, 2048},
                        FusedCase{"norm_linear q/k/v prefill 512", Fused::NormQkv, 512, 2048, 4096},
                        FusedCase{"norm_linear_swiglu prefill 512", Fused::NormSwiglu, 512, 2048, 6144},
                        FusedCase{"linear_residual down_proj prefill 512", Fused::Residual, 512, 6144, 2048}}) {
        const size_t keep = g_tensors.size();
        const bool swiglu = f.kind == Fused::NormSwiglu;
        const double weight_bytes = double(f.N) * f.K * 2 * (swiglu ? 2 : 1);
        const double flops = 2.0 * f.M * f.N * f.K * (swiglu ? 2 : 1);
        const int copies = f.M <= 8 ? weight_copies(weight_bytes) : 1;
        qwen3vl_tensor* x = tensor(f32, {f.M, f.K});
        qwen3vl_tensor* nw = tensor(bf16, {f.K});
        qwen3vl_tensor* out = tensor(f32, {f.M, f.kind == Fused::NormQkv ? f.N / 2 : f.N});
        qwen3vl_tensor* out_k = f.kind == Fused::NormQkv ? tensor(f32, {f.M, f.N / 4}) : nullptr;
        qwen3vl_tensor* out_v = f.kind == Fused::NormQkv ? tensor(f32, {f.M, f.N / 4}) : nullptr;
        std::vector<std::vector<qwen3vl_tensor*>> w(static_cast<size_t>(copies));
        for (auto& set : w) {
            if (f.kind == Fused::NormQkv)
                set = {tensor(bf16, {f.N / 2, f.K}), tensor(bf16, {f.N / 4, f.K}), tensor(bf16, {f.N / 4, f.K})};
            else if (swiglu)
                set = {tensor(bf16, {f.N, f.K}), tensor(bf16, {f.N, f.K})};
            else
                set = {tensor(bf16, {f.N, f.K})};
        }
        report_linear(f.what, f.M, f.K, f.N, weight_bytes, flops, iters, copies, x, [&](int c) {
            const std::vector<qwen3vl_tensor*>& ws = w[size_t(c)];
            switch (f.kind) {
                case Fused::NormQkv:
                    return norm_linear(out, ws[0], out_k, ws[1], out_v, ws[2], x, nw, 1e-6f);
                case Fused::NormSwiglu: return qwen3vl_op_norm_linear_swiglu(out, x, nw, 1e-6f, ws[0], ws[1]);
                case Fused::Residual: return qwen3vl_op_linear_residual(out, x, ws[0], nullptr, out);
                default: return norm_linear(out, ws[0], nullptr, nullptr, nullptr, nullptr, x, nw, 1e-6f);
            }
        });
        // The same work as the unfused sequence of ops it replaces (what the decoder layer ran before the fusion):
        // rms_norm into a buffer, then one linear per weight / linear_swiglu; linear into a buffer, then add.
        qwen3vl_tensor* xn = tensor(f32, {f.M, f.K});
        qwen3vl_tensor* tmp = tensor(f32, {f.M, f.N});
        const std::string unfused = std::string("  unfused: ") +
                                    (f.kind == Fused::Residual ? "linear + add" : f.kind == Fused::NormQkv ? "rms_norm + 3 linear"
                                                                                 : swiglu ? "rms_norm + linear_swiglu"
                                                                                          : "rms_norm + linear");
        report_linear(unfused.c_str(), f.M, f.K, f.N, weight_bytes, flops, iters, copies, x, [&](int c) {
            const std::vector<qwen3vl_tensor*>& ws = w[size_t(c)];
            qwen3vl_status st = QWEN3VL_STATUS_OK;
            switch (f.kind) {
                case Fused::NormQkv:
                    if ((st = qwen3vl_op_rms_norm(xn, x, nw, 1e-6f)) != QWEN3VL_STATUS_OK) return st;
                    if ((st = qwen3vl_op_linear(out, xn, ws[0], nullptr)) != QWEN3VL_STATUS_OK) return st;
                    if ((st = qwen3vl_op_linear(out_k, xn, ws[1], nullptr)) != QWEN3VL_STATUS_OK) return st;
                    return qwen3vl_op_linear(out_v, xn, ws[2], nullptr);
                case Fused::NormSwiglu:
                    if ((st = qwen3vl_op_rms_norm(xn, x, nw, 1e-6f)) != QWEN3VL_STATUS_OK) return st;
                    return qwen3vl_op_linear_swiglu(out, xn, ws[0], ws[1]);
                case Fused::Residual:
                    if ((st = qwen3vl_op_linear(tmp, x, ws[0], nullptr)) != QWEN3VL_STATUS_OK) return st;
                    return qwen3vl_op_add(out, out, tmp);
                default:
                    if ((st = qwen3vl_op_rms_norm(xn, x, nw, 1e-6f)) != QWEN3VL_STATUS_OK) return st;
                    return qwen3vl_op_linear(out, xn, ws[0], nullptr);
            }
        });
        release_after(keep);
    }
}

// One projection case of the block-format families (q8, q4): the decoder's fused forms as the layer runs them, and
// a plain linear. N: output rows (q/k/v: all three together, kv rows each for k and v).
enum class BlockKind { Linear, NormQkv, NormSwiglu, Residual, NormLmHead };
struct BlockCase {
    std::string what;
    BlockKind kind;
    int64_t M, K, N;
    int64_t kv = 0;  // NormQkv: rows of k and of v (q: N - 2 kv); 0: N / 4 (the 2B's 2048 / 1024 / 1024)
};

// Weight bytes the op must read per weight: Q8 17/16 (int8 values and one f16 scale per 32), Q4 9/16 (a nibble and
// a 16-byte header per 256), bf16 2.
double bytes_per_weight(qwen3vl_dtype wt) {
    return wt == QWEN3VL_DTYPE_Q8 ? 17.0 / 16.0 : wt == QWEN3VL_DTYPE_Q4 ? 9.0 / 16.0 : 2.0;
}

// Times case c with weights of dtype wt (quantized on the device by tensor_write for Q8 and Q4).
void bench_block_case(int iters, const BlockCase& c, qwen3vl_dtype wt) {
    const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32;
    const size_t keep = g_tensors.size();
    const bool swiglu = c.kind == BlockKind::NormSwiglu, qkv = c.kind == BlockKind::NormQkv;
    const int64_t kv = c.kv > 0 ? c.kv : c.N / 4, nq = c.N - 2 * kv;
    const double elements = double(c.N) * c.K * (swiglu ? 2 : 1);
    const double weight_bytes = elements * bytes_per_weight(wt);
    const double flops = 2.0 * c.M * elements;
    const int copies = c.M <= 8 ? weight_copies(weight_bytes) : 1;
    qwen3vl_tensor* x = tensor(f32, {c.M, c.K});
    qwen3vl_tensor* nw = tensor(bf16, {c.K});
    qwen3vl_tensor* out = tensor(f32, {c.M, qkv ? nq : c.N});
    qwen3vl_tensor* out_k = qkv ? tensor(f32, {c.M, kv}) : nullptr;
    qwen3vl_tensor* out_v = qkv ? tensor(f32, {c.M, kv}) : nullptr;
    std::vector<std::vector<qwen3vl_tensor*>> w(static_cast<size_t>(copies));
    for (auto& set : w) {
        if (qkv)
            set = {tensor(wt, {nq, c.K}), tensor(wt, {kv, c.K}), tensor(wt, {kv, c.K})};
        else if (swiglu)
            set = {tensor(wt, {c.N, c.K}), tensor(wt, {c.N, c.K})};
        else
            set = {tensor(wt, {c.N, c.K})};
    }
    const char* name = wt == QWEN3VL_DTYPE_Q8 ? "q8   " : wt == QWEN3VL_DTYPE_Q4 ? "q4   " : "bf16 ";
    const std::string what = std::string(name) + c.what;
    report_linear(what.c_str(), c.M, c.K, c.N, weight_bytes, flops, iters, copies, x, [&](int i) {
        const std::vector<qwen3vl_tensor*>& ws = w[size_t(i)];
        switch (c.kind) {
            case BlockKind::Linear: return qwen3vl_op_linear(out, x, ws[0], nullptr);
            case BlockKind::NormQkv: return norm_linear(out, ws[0], out_k, ws[1], out_v, ws[2], x, nw, 1e-6f);
            case BlockKind::NormSwiglu: return qwen3vl_op_norm_linear_swiglu(out, x, nw, 1e-6f, ws[0], ws[1]);
            case BlockKind::Residual: return qwen3vl_op_linear_residual(out, x, ws[0], nullptr, out);
            default: return norm_linear(out, ws[0], nullptr, nullptr, nullptr, nullptr, x, nw, 1e-6f);
        }
    });
    release_after(keep);
}

// A decoder's projections (hidden H, q/k/v Q / KV / KV, intermediate I) in decode (the fused forms as the layer runs
// them, and a plain linear) and in prefill, and its lm_head; names after `prefix`.
struct DecoderShape {
    const char* prefix;
    int64_t H, Q, KV, I;
};
std::vector<BlockCase> decoder_cases(const DecoderShape& d) {
    const std::string p = d.prefix;
    const int64_t qkv = d.Q + 2 * d.KV;
    return {{p + "linear q_proj decode", BlockKind::Linear, 1, d.H, d.Q},
            {p + "norm_linear q/k/v decode", BlockKind::NormQkv, 1, d.H, qkv, d.KV},
            {p + "linear_residual o_proj decode", BlockKind::Residual, 1, d.Q, d.H},
            {p + "norm_linear_swiglu gate/up decode", BlockKind::NormSwiglu, 1, d.H, d.I},
            {p + "linear_residual down_proj decode", BlockKind::Residual, 1, d.I, d.H},
            {p + "norm_linear lm_head decode", BlockKind::NormLmHead, 1, d.H, 151936},
            {p + "norm_linear_swiglu gate/up M=8", BlockKind::NormSwiglu, 8, d.H, d.I},
            {p + "linear_residual down_proj M=8", BlockKind::Residual, 8, d.I, d.H},
            {p + "norm_linear q/k/v prefill 512", BlockKind::NormQkv, 512, d.H, qkv, d.KV},
            {p + "norm_linear_swiglu prefill 512", BlockKind::NormSwiglu, 512, d.H, d.I},
            {p + "linear prefill 512", BlockKind::Linear, 512, d.H, d.I}};
}
const DecoderShape k2B{"", 2048, 2048, 1024, 6144}, k8B{"8B ", 4096, 4096, 1024, 12288};

// Linear family with Q8 weights (int8 blocks of 32 with f16 scales, quantized on the device by tensor_write): the 2B's
// cases, each next to the same op with bf16 weights. GB/s counts the weight bytes the op must read (bytes_per_weight).
void bench_q8(int iters) {
    for (const BlockCase& c : decoder_cases(k2B))
        for (qwen3vl_dtype wt : {QWEN3VL_DTYPE_Q8, QWEN3VL_DTYPE_BF16}) bench_block_case(iters, c, wt);
}

// Linear family with Q4 weights (super-blocks of 256 with 6-bit group scales and mins, quantized on the device by
// tensor_write): the 2B's projections and the 8B's (hidden 4096, q/k/v 4096 / 1024 / 1024, intermediate 12288: the
// 4096 -> 4096, 4096 -> 12288 and 12288 -> 4096 shapes), each next to the same op with Q8 weights; lm_head stays
// Q8 in the Q4 model, so its rows (2048 x 151936 and 4096 x 151936) are Q8 only.
void bench_q4(int iters) {
    for (const DecoderShape& d : {k2B, k8B})
        for (const BlockCase& c : decoder_cases(d)) {
            if (c.kind == BlockKind::NormLmHead) {
                bench_block_case(iters, c, QWEN3VL_DTYPE_Q8);
                continue;
            }
            for (qwen3vl_dtype wt : {QWEN3VL_DTYPE_Q4, QWEN3VL_DTYPE_Q8}) bench_block_case(iters, c, wt);
        }
}

// Reduce family: selections over one decoding step's logits.
void bench_select(int iters) {
    [[maybe_unused]] const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32;
    // Selections over one decoding step's logits (1 x 151936 f32): argmax (greedy) and top_k (sampling's candidates:
    // 20 as Qwen3-VL's top_k, 32 the decoding graphs' bucket for it, the largest k). Latency-bound: the row is 0.6 MB.
    {
        const int64_t vocab = 151936;
        qwen3vl_tensor* logits = tensor(f32, {1, vocab});
        qwen3vl_tensor* best = nullptr;
        const int64_t one = 1;
        check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, 1, &one, &best), "tensor_create");
        g_tensors.push_back(best);
        const auto report = [&](const std::string& what, const std::function<qwen3vl_status()>& op, qwen3vl_tensor* sync) {
            const double eager = time_op(iters, sync, op);
            const double graph = time_graph(iters, 4, sync, [&](int) { return op(); });
            std::printf("%-34s V=%-6lld %9.1f us eager %9.1f us graph %7.0f GB/s logits\n", what.c_str(),
                        (long long)vocab, eager * 1e6, graph * 1e6, vocab * 4.0 / (graph > 0.0 ? graph : eager) / 1e9);
        };
        report("argmax decode logits", [&] { return qwen3vl_op_argmax(best, logits); }, logits);
        for (int64_t k : {int64_t(20), int64_t(32), int64_t(QWEN3VL_TOP_K_MAX)}) {
            qwen3vl_tensor* values = tensor(f32, {1, k});
            qwen3vl_tensor* ids = nullptr;
            const int64_t shape[2] = {1, k};
            check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, 2, shape, &ids), "tensor_create");
            g_tensors.push_back(ids);
            report("top_k decode logits k=" + std::to_string(k), [&] { return qwen3vl_op_top_k(values, ids, logits, k); },
                   values);
        }
    }
}

// Attention family: text attention (decode, prefill, a chat turn; 16 query / 8 KV heads of 128), the decode
// step's fused attention, and vision attention.
void bench_attention(int iters) {
    [[maybe_unused]] const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32, q8 = QWEN3VL_DTYPE_Q8;
    const int64_t Hq = 16, Hkv = 8, D = 128;
    // Attention, text (16 query / 8 KV heads of 128): decode is bandwidth-bound on the cache (GB/s of the K and V
    // rows it must read), prefill compute-bound (causal FLOPs: 4 * Hq * D per visible query-key pair).
    struct Att {
        const char* what;
        int64_t T, n_past;
        qwen3vl_dtype cache;
    };
    for (Att a : {Att{"attention decode", 1, 511, f32}, Att{"attention decode", 1, 1023, f32},
                  Att{"attention decode", 1, 4095, f32}, Att{"attention decode bf16 cache", 1, 4095, bf16},
                  Att{"attention decode q8 cache", 1, 4095, q8}, Att{"attention decode bf16 cache", 1, 32767, bf16},
                  Att{"attention decode q8 cache", 1, 32767, q8},
                  Att{"attention prefill", 512, 0, f32}, Att{"attention prefill", 2048, 0, f32},
                  Att{"attention prefill bf16 cache", 2048, 0, bf16}, Att{"attention prefill q8 cache", 2048, 0, q8},
                  Att{"attention chat turn q8 cache", 64, 4000, q8},
                  Att{"attention chat turn (split-K)", 64, 4000, f32}}) {
        const int64_t cap = a.n_past + a.T;
        qwen3vl_tensor* q = tensor(f32, {a.T, Hq, D});
        qwen3vl_tensor* kc = tensor(a.cache, {cap, Hkv, D});
        qwen3vl_tensor* vc = tensor(a.cache, {cap, Hkv, D});
        qwen3vl_tensor* out = tensor(f32, {a.T, Hq, D});
        const double s = time_op(iters, q, [&] {
            return attention(out, q, kc, vc, a.n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr);
        });
        const double kv_bytes = 2.0 * double(cap) * Hkv * D * (a.cache == f32 ? 4 : a.cache == q8 ? 17.0 / 16 : 2);
        const double flops = 4.0 * Hq * D * (double(a.T) * a.n_past + double(a.T) * (a.T + 1) / 2);
        std::printf("%-34s T=%-5lld n_past=%-5lld %9.1f us  %7.0f GB/s KV cache (%s)  %7.2f TFLOP/s (%s)\n", a.what,
                    (long long)a.T, (long long)a.n_past, s * 1e6, kv_bytes / s / 1e9, of_copy(kv_bytes / s / 1e9).c_str(),
                    flops / s / 1e12, of_gemm(flops / s / 1e12).c_str());
    }
    // The decoding step's attention as captured in the decode graph (n_past read from a device tensor, bf16 cache):
    // QK-norm + M-RoPE + cache write, then attention (two kernels + the split-K merge), against the fused
    // qwen3vl_op_qk_norm_rope_attention (one kernel + the merge). Graph time per layer.
    for (int64_t n_past : {int64_t(511), int64_t(4095)})
      for (qwen3vl_dtype cache : {bf16, q8}) {
        const size_t keep = g_tensors.size();
        const int64_t cap = n_past + 1;
        qwen3vl_tensor* q = tensor(f32, {1, Hq, D});
        qwen3vl_tensor* k = tensor(f32, {1, Hkv, D});
        qwen3vl_tensor* v = tensor(f32, {1, Hkv, D});
        qwen3vl_tensor* qn = tensor(bf16, {D});
        qwen3vl_tensor* kn = tensor(bf16, {D});
        qwen3vl_tensor* kc = tensor(cache, {cap, Hkv, D});
        qwen3vl_tensor* vc = tensor(cache, {cap, Hkv, D});
        qwen3vl_tensor* out = tensor(f32, {1, Hq, D});
        qwen3vl_tensor *pos = nullptr, *np = nullptr;
        const int64_t three[2] = {3, 1}, one = 1;
        const int32_t pv[3] = {int32_t(n_past), int32_t(n_past), int32_t(n_past)}, nv = int32_t(n_past);
        check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, 2, three, &pos), "tensor_create");
        check(qwen3vl_tensor_write(pos, QWEN3VL_DTYPE_I32, pv, sizeof pv), "tensor_write");
        check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, 1, &one, &np), "tensor_create");
        check(qwen3vl_tensor_write(np, QWEN3VL_DTYPE_I32, &nv, sizeof nv), "tensor_write");
        g_tensors.push_back(pos);
        g_tensors.push_back(np);
        const int64_t section[3] = {24, 20, 20};
        const double two_ops = time_graph(iters, 28, out, [&](int) {
            const qwen3vl_status st = qk_norm_rope_kv(q, k, v, qn, kn, 1e-6f, pos, 5e6f, section, kc, vc, 0, np);
            if (st != QWEN3VL_STATUS_OK) return st;
            return attention(out, q, kc, vc, 0, QWEN3VL_ATTENTION_CAUSAL, nullptr, np);
        });
        const double fused = time_graph(iters, 28, out, [&](int) {
            return qk_norm_rope_attention(out, q, k, v, qn, kn, 1e-6f, pos, 5e6f, section, kc, vc, 0, np);
        });
        std::printf("%-34s n_past=%-5lld %9.1f us two ops (graph)  %9.1f us fused (graph)  %s cache\n",
                    "decode qk-norm/rope + attention", (long long)n_past, two_ops * 1e6, fused * 1e6,
                    cache == q8 ? "q8" : "bf16");
        release_after(keep);
      }
    // Vision attention (16 heads of 64, fused qkv f32): one image of T patches per segment (4096: 1024x1024 pixels).
    // D = 72: the vision heads of Qwen3-VL-4B/8B (hidden 1152), run by the D = 80 kernel with zero padding.
    struct VisionAtt {
        int64_t T, Dv;
    };
    for (VisionAtt va : {VisionAtt{1024, 64}, VisionAtt{4096, 64}, VisionAtt{4096, 72}}) {
        const int64_t T = va.T, H = 16, Dv = va.Dv;
        qwen3vl_tensor* qkv = tensor(f32, {T, 3, H, Dv});
        qwen3vl_tensor* out = tensor(f32, {T, H, Dv});
        qwen3vl_tensor* seg = nullptr;
        const int32_t offsets[2] = {0, int32_t(T)};
        const int64_t two = 2;
        check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, 1, &two, &seg), "tensor_create");
        check(qwen3vl_tensor_write(seg, QWEN3VL_DTYPE_I32, offsets, sizeof offsets), "tensor_write");
        g_tensors.push_back(seg);
        const double s = time_op(iters, out, [&] {
            return attention(out, qkv, nullptr, nullptr, 0, QWEN3VL_ATTENTION_SEGMENTS, seg);
        });
        const double flops = 4.0 * double(T) * T * H * Dv;
        std::printf("%-34s T=%-5lld 1 segment    %9.1f us  %7.2f TFLOP/s (%s)\n",
                    Dv == 64 ? "attention vision" : "attention vision D=72", (long long)T, s * 1e6, flops / s / 1e12,
                    of_gemm(flops / s / 1e12).c_str());
    }
}

// One decoder layer's decoding step as the decode graph runs it (the families together).
void bench_decode_layer(int iters) {
    [[maybe_unused]] const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32, q8 = QWEN3VL_DTYPE_Q8;
    const int64_t Hq = 16, Hkv = 8, D = 128;
    // One decoder layer's decoding step as the decode graph runs it (n_past 640 read on the device, bucket bound 767,
    // bf16 weights and cache; 4 copies of the layer's 100.7 MB of weights so they come from HBM).
    {
        const size_t keep = g_tensors.size();
        const int64_t Hd = 2048, I = 6144, copies = 4, cap = 1024, bound = 767;
        struct Layer {
            qwen3vl_tensor *in_norm, *wq, *wk, *wv, *qn, *kn, *wo, *post_norm, *wg, *wu, *wd, *kc, *vc;
        };
        std::vector<Layer> layers;
        for (int64_t c = 0; c < copies; ++c)
            layers.push_back({tensor(bf16, {Hd}), tensor(bf16, {Hq * D, Hd}), tensor(bf16, {Hkv * D, Hd}),
                              tensor(bf16, {Hkv * D, Hd}), tensor(bf16, {D}), tensor(bf16, {D}),
                              tensor(bf16, {Hd, Hq * D}), tensor(bf16, {Hd}), tensor(bf16, {I, Hd}),
                              tensor(bf16, {I, Hd}), tensor(bf16, {Hd, I}), tensor(bf16, {cap, Hkv, D}),
                              tensor(bf16, {cap, Hkv, D})});
        qwen3vl_tensor* x = tensor(f32, {1, Hd});
        qwen3vl_tensor* q = tensor(f32, {1, Hq, D});
        qwen3vl_tensor* k = tensor(f32, {1, Hkv, D});
        qwen3vl_tensor* v = tensor(f32, {1, Hkv, D});
        qwen3vl_tensor* attn = tensor(f32, {1, Hq, D});
        qwen3vl_tensor* g = tensor(f32, {1, I});
        qwen3vl_tensor *q2 = nullptr, *k2 = nullptr, *v2 = nullptr, *attn2 = nullptr, *pos = nullptr, *np = nullptr;
        const int64_t s_q2[2] = {1, Hq * D}, s_kv2[2] = {1, Hkv * D}, s_pos[2] = {3, 1}, one = 1;
        check(qwen3vl_tensor_view(q, 0, 2, s_q2, &q2), "tensor_view");
        check(qwen3vl_tensor_view(k, 0, 2, s_kv2, &k2), "tensor_view");
        check(qwen3vl_tensor_view(v, 0, 2, s_kv2, &v2), "tensor_view");
        check(qwen3vl_tensor_view(attn, 0, 2, s_q2, &attn2), "tensor_view");
        const int32_t pv[3] = {640, 640, 640}, nv = 640;
        check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, 2, s_pos, &pos), "tensor_create");
        check(qwen3vl_tensor_write(pos, QWEN3VL_DTYPE_I32, pv, sizeof pv), "tensor_write");
        check(qwen3vl_tensor_create(g_be, QWEN3VL_DTYPE_I32, 1, &one, &np), "tensor_create");
        check(qwen3vl_tensor_write(np, QWEN3VL_DTYPE_I32, &nv, sizeof nv), "tensor_write");
        for (qwen3vl_tensor* t : {q2, k2, v2, attn2, pos, np}) g_tensors.push_back(t);
        const int64_t section[3] = {24, 20, 20};
        auto layer = [&](int c) {
            const Layer& w = layers[size_t(c) % layers.size()];
            qwen3vl_status st = norm_linear(q2, w.wq, k2, w.wk, v2, w.wv, x, w.in_norm, 1e-6f);
            if (st == QWEN3VL_STATUS_OK)
                st = qk_norm_rope_attention(attn, q, k, v, w.qn, w.kn, 1e-6f, pos, 5e6f, section, w.kc, w.vc, 0, np,
                                            bound);
            if (st == QWEN3VL_STATUS_OK) st = qwen3vl_op_linear_residual(x, attn2, w.wo, nullptr, x);
            if (st == QWEN3VL_STATUS_OK) st = qwen3vl_op_norm_linear_swiglu(g, x, w.post_norm, 1e-6f, w.wg, w.wu);
            if (st == QWEN3VL_STATUS_OK) st = qwen3vl_op_linear_residual(x, g, w.wd, nullptr, x);
            return st;
        };
        const double bytes = 2.0 * (double(Hq * D + 2 * Hkv * D) * Hd + double(Hd) * Hq * D + 3.0 * double(I) * Hd);
        const double s = time_graph(iters, 28, x, layer);
        std::printf("%-34s n_past=640 %9.1f us per layer (graph)  %7.0f GB/s of its weights (%s)\n", "decode layer",
                    s * 1e6, bytes / s / 1e9, of_copy(bytes / s / 1e9).c_str());
        release_after(keep);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const int iters = argc > 1 ? std::atoi(argv[1]) : 50;
    std::vector<std::string> families;
    for (int i = 2; i < argc; ++i) families.push_back(argv[i]);
    const auto wanted = [&](const char* family) {
        return families.empty() || std::find(families.begin(), families.end(), family) != families.end();
    };
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    p.type = QWEN3VL_BACKEND_CUDA;
    check(qwen3vl_backend_create(&p, &g_be), "backend_create");
    char name[256];
    check(qwen3vl_backend_name(g_be, name, sizeof name), "backend_name");
    g_ceilings = qwen3vl::bench::measure_cuda_ceilings(p.device);
    std::printf("%s, %d iterations per op\n", name, iters);
    if (g_ceilings.ok)
        std::printf("ceilings (measured now): device copy %.0f GB/s (read + write bytes), cuBLASLt bf16 GEMM 8192^3 "
                    "%.1f TFLOP/s\n",
                    g_ceilings.copy_gbs, g_ceilings.gemm_tflops);
    else
        std::printf("ceilings: not measured (see the message above); shares print as n/a\n");
    if (wanted("linear")) bench_linear(iters);
    if (wanted("fused")) bench_fused_linear(iters);
    if (wanted("q8")) bench_q8(iters);
    if (wanted("q4")) bench_q4(iters);
    if (wanted("select")) bench_select(iters);
    if (wanted("attention")) bench_attention(iters);
    if (wanted("decode")) bench_decode_layer(iters);
    if (wanted("vision")) bench_vision(iters);

    for (auto it = g_tensors.rbegin(); it != g_tensors.rend(); ++it) qwen3vl_tensor_free(*it);
    qwen3vl_backend_free(g_be);
    return 0;
}
