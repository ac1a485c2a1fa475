// CPU attention and norm benchmarks at Qwen3-VL-2B sizes (16 query heads, 8 KV heads, head_dim 128, hidden 2048;
// vision 16 heads of 64), on a pool of all logical processors, for each kernel set this CPU has.
//
// Counters: GFLOP/s counts 2 FLOPs per multiply-add of QK^T and of PV (4 Hq D per visible key per query; causal
// prefill sees T (T + 1) / 2 keys per head); GB/s counts the K/V cache bytes an attention call must read (decode)
// or the bytes a norm reads and writes.
//
//   cmake --preset bench && cmake --build --preset bench -j2 --target qwen3vl_bench_nn
//   build/bench/tests/bench/qwen3vl_bench_nn
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "attention.h"
#include "bench_ceilings_cpu.h"
#include "cpu_features.h"
#include "dtype.h"
#include "norm.h"
#include "platform.h"
#include "thread_pool.h"

namespace {

using namespace qwen3vl;

ThreadPool& pool() { return qwen3vl_bench::pool_of(std::max(1, logical_processor_count())); }

CpuKernels kernels_arg(int64_t a) { return a ? CpuKernels::Avx2 : CpuKernels::Scalar; }

bool skip_unsupported(benchmark::State& state, CpuKernels k) {
    if (k == CpuKernels::Avx2 && cpu_kernels() != CpuKernels::Avx2) {
        state.SkipWithError("no AVX2 on this CPU (or QWEN3VL_CPU_KERNELS=scalar)");
        return true;
    }
    state.SetLabel(cpu_kernels_name(k));
    return false;
}

std::vector<float> random_f32(size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = u(g);
    return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
    return h;
}

constexpr int64_t kHq = 16, kHkv = 8, kD = 128;

// Args: T, n_past, cache dtype (0 f32, 2 bf16), kernel set (0 scalar, 1 avx2).
void BM_AttentionCausal(benchmark::State& state) {
    const int64_t T = state.range(0), n_past = state.range(1);
    const auto dtype = static_cast<qwen3vl_dtype>(state.range(2));
    const CpuKernels k = kernels_arg(state.range(3));
    if (skip_unsupported(state, k)) return;
    const int64_t keys = n_past + T, row = kHkv * kD;
    const std::vector<float> kf = random_f32(size_t(keys * row), 1), vf = random_f32(size_t(keys * row), 2);
    const std::vector<uint16_t> kh = to_bf16(kf), vh = to_bf16(vf);
    const std::vector<float> q = random_f32(size_t(T * kHq * kD), 3);
    std::vector<float> out(q.size());
    cpu::AttentionArgs a{};
    a.out = out.data();
    a.q = q.data();
    a.q_stride = kHq * kD;
    a.k = dtype == QWEN3VL_DTYPE_F32 ? static_cast<const void*>(kf.data()) : kh.data();
    a.v = dtype == QWEN3VL_DTYPE_F32 ? static_cast<const void*>(vf.data()) : vh.data();
    a.kv_dtype = dtype;
    a.kv_stride = row;
    a.tokens = T;
    a.q_heads = kHq;
    a.kv_heads = kHkv;
    a.head_dim = kD;
    a.causal = true;
    a.n_past = n_past;
    for (auto _ : state) {
        cpu::attention(pool(), a, k);
        benchmark::DoNotOptimize(out.data());
    }
    double visible = 0;  // keys seen, summed over the query tokens
    for (int64_t t = 0; t < T; ++t) visible += double(n_past + t + 1);
    const double flops = 4.0 * kHq * kD * visible;
    const double bytes = 2.0 * double(keys * row) * double(dtype_size(dtype));
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AttentionCausal)
    ->ArgNames({"T", "n_past", "dtype", "avx2"})
    ->ArgsProduct({{1}, {512, 4096}, {0, 2}, {0, 1}})
    ->ArgsProduct({{512}, {0}, {0}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Vision: one 32 x 32 patch image (1024 tokens), 16 heads of 64, bidirectional within the image.
void BM_AttentionVision(benchmark::State& state) {
    const CpuKernels k = kernels_arg(state.range(0));
    if (skip_unsupported(state, k)) return;
    const int64_t T = 1024, H = 16, D = 64;
    const std::vector<float> qkv = random_f32(size_t(T * 3 * H * D), 4);
    std::vector<float> out(size_t(T * H * D));
    const std::vector<int32_t> seg = {0, int32_t(T)};
    cpu::AttentionArgs a{};
    a.out = out.data();
    a.q = qkv.data();
    a.q_stride = 3 * H * D;
    a.k = qkv.data() + H * D;
    a.v = qkv.data() + 2 * H * D;
    a.kv_dtype = QWEN3VL_DTYPE_F32;
    a.kv_stride = 3 * H * D;
    a.tokens = T;
    a.q_heads = H;
    a.kv_heads = H;
    a.head_dim = D;
    a.segments = seg.data();
    a.n_segments = 1;
    for (auto _ : state) {
        cpu::attention(pool(), a, k);
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["GFLOP/s"] =
        benchmark::Counter(4.0 * H * D * double(T) * double(T) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AttentionVision)->ArgNames({"avx2"})->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// Args: rows, kernel set. Hidden 2048, bf16 weight (as stored in the checkpoint).
void BM_RmsNorm(benchmark::State& state) {
    const int64_t rows = state.range(0), n = 2048;
    const CpuKernels k = kernels_arg(state.range(1));
    if (skip_unsupported(state, k)) return;
    const std::vector<float> x = random_f32(size_t(rows * n), 5);
    const std::vector<uint16_t> w = to_bf16(random_f32(size_t(n), 6));
    std::vector<float> out(x.size());
    for (auto _ : state) {
        cpu::rms_norm(pool(), out.data(), x.data(), w.data(), QWEN3VL_DTYPE_BF16, rows, n, 1e-6f, k);
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["GB/s"] = benchmark::Counter(2.0 * double(rows * n) * 4 * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_RmsNorm)->ArgNames({"rows", "avx2"})->ArgsProduct({{1, 512}, {0, 1}})->UseRealTime();

void BM_AddRmsNorm(benchmark::State& state) {
    const int64_t rows = state.range(0), n = 2048;
    const CpuKernels k = kernels_arg(state.range(1));
    if (skip_unsupported(state, k)) return;
    std::vector<float> res = random_f32(size_t(rows * n), 7);
    const std::vector<float> x = random_f32(size_t(rows * n), 8);
    const std::vector<uint16_t> w = to_bf16(random_f32(size_t(n), 9));
    std::vector<float> out(x.size());
    for (auto _ : state) {
        cpu::add_rms_norm(pool(), res.data(), out.data(), x.data(), w.data(), QWEN3VL_DTYPE_BF16, rows, n, 1e-6f, k);
        benchmark::DoNotOptimize(out.data());
    }
    // residual read + written, x read, out written
    state.counters["GB/s"] = benchmark::Counter(4.0 * double(rows * n) * 4 * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AddRmsNorm)->ArgNames({"rows", "avx2"})->ArgsProduct({{512}, {0, 1}})->UseRealTime();

}  // namespace

// The read-bandwidth and FMA ceilings on the pool these benchmarks use, so that their GB/s sit next to the bound in
// one run.
int main(int argc, char** argv) {
    qwen3vl_bench::register_cpu_ceilings({std::max(1, logical_processor_count())});
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
