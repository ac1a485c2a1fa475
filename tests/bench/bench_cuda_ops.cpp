// Timings of the CUDA ops through the C API at Qwen3-VL-2B shapes (random data): the time per call, averaged over
// a loop closed by a tensor read (the C API's synchronisation point), so it includes the host side of each call
// (argument checks, launches, cuBLASLt heuristics). Memory-bound ops print GB/s of the bytes they must read (weights
// or the KV cache), GEMMs TFLOP/s; compare with the card's ceilings (H100 SXM: ~3.35 TB/s HBM3, ~990 TFLOP/s dense
// bf16). Usage: qwen3vl_bench_cuda [iterations]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "qwen3vl.h"

namespace {

qwen3vl_backend* g_be = nullptr;
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

}  // namespace

int main(int argc, char** argv) {
    const int iters = argc > 1 ? std::atoi(argv[1]) : 50;
    qwen3vl_backend_params p = qwen3vl_backend_default_params();
    p.type = QWEN3VL_BACKEND_CUDA;
    check(qwen3vl_backend_create(&p, &g_be), "backend_create");
    char name[256];
    check(qwen3vl_backend_name(g_be, name, sizeof name), "backend_name");
    std::printf("%s, %d iterations per op\n", name, iters);
    const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16, f32 = QWEN3VL_DTYPE_F32;

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
        qwen3vl_tensor* x = tensor(f32, {l.M, l.K});
        qwen3vl_tensor* w = tensor(bf16, {l.N, l.K});
        qwen3vl_tensor* u = l.swiglu ? tensor(bf16, {l.N, l.K}) : nullptr;
        qwen3vl_tensor* out = tensor(f32, {l.M, l.N});
        const double s = time_op(iters, x, [&] {
            return l.swiglu ? qwen3vl_op_linear_swiglu(out, x, w, u) : qwen3vl_op_linear(out, x, w, nullptr);
        });
        const double weight_bytes = double(l.N) * l.K * 2 * (l.swiglu ? 2 : 1);
        const double flops = 2.0 * l.M * l.N * l.K * (l.swiglu ? 2 : 1);
        std::printf("%-34s M=%-5lld K=%-5lld N=%-6lld %9.1f us  %7.0f GB/s weights  %7.1f TFLOP/s\n", l.what,
                    (long long)l.M, (long long)l.K, (long long)l.N, s * 1e6, weight_bytes / s / 1e9, flops / s / 1e12);
    }

    struct Att {
        const char* what;
        int64_t T, n_past;
    };
    const int64_t Hq = 16, Hkv = 8, D = 128;
    for (Att a : {Att{"attention decode", 1, 1023}, Att{"attention decode", 1, 4095}, Att{"attention prefill", 512, 0},
                  Att{"attention prefill", 2048, 0}}) {
        const int64_t cap = a.n_past + a.T;
        qwen3vl_tensor* q = tensor(f32, {a.T, Hq, D});
        qwen3vl_tensor* kc = tensor(bf16, {cap, Hkv, D});
        qwen3vl_tensor* vc = tensor(bf16, {cap, Hkv, D});
        qwen3vl_tensor* out = tensor(f32, {a.T, Hq, D});
        const double s = time_op(iters, q, [&] {
            return qwen3vl_op_attention(out, q, kc, vc, a.n_past, QWEN3VL_ATTENTION_CAUSAL, nullptr);
        });
        const double kv_bytes = 2.0 * double(cap) * Hkv * D * 2;
        const double flops = 4.0 * Hq * D * (double(a.T) * a.n_past + double(a.T) * (a.T + 1) / 2);
        std::printf("%-34s T=%-5lld n_past=%-5lld %9.1f us  %7.0f GB/s KV cache  %7.2f TFLOP/s\n", a.what,
                    (long long)a.T, (long long)a.n_past, s * 1e6, kv_bytes / s / 1e9, flops / s / 1e12);
    }

    for (auto it = g_tensors.rbegin(); it != g_tensors.rend(); ++it) qwen3vl_tensor_free(*it);
    qwen3vl_backend_free(g_be);
    return 0;
}
